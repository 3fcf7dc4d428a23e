//! A host that records what the filter asks of it: for unit tests of the request's state
//! machine and for the property test that holds the filter's verdicts against the sidecar's
//! (`tests/tests/agreement.rs`). Not used inside Envoy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::types::Status;

use super::Host;

/// One dispatched gRPC call.
#[derive(Debug, Clone)]
pub struct Call {
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub metadata: Vec<(String, Vec<u8>)>,
    pub message: Vec<u8>,
}

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the host holds and what it was asked.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Unix seconds.
    pub now: u64,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The answer `grpc_response` returns.
    pub grpc_response: Option<Vec<u8>>,
    /// `dispatch_grpc` fails (the cluster is unknown).
    pub refuse_dispatch: bool,
    pub calls: Vec<Call>,
    pub reply: Option<Reply>,
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    pub resumed: bool,
    pub warnings: Vec<String>,
    /// Headers set on the response.
    pub response_headers: Vec<(String, String)>,
}

/// Cheap to clone: the clones share one state, so a test keeps one and gives one to the filter.
#[derive(Debug, Default, Clone)]
pub struct FakeHost(pub Rc<RefCell<FakeState>>);

impl FakeHost {
    pub fn state(&self) -> std::cell::RefMut<'_, FakeState> {
        self.0.borrow_mut()
    }

    /// The request header's values, in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        let s = self.0.borrow();
        s.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect()
    }
}

impl Host for FakeHost {
    fn now(&self) -> u64 {
        self.0.borrow().now
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.0.borrow().headers.clone()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut s = self.0.borrow_mut();
        s.headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            s.headers.push((name.to_string(), v.as_bytes().to_vec()));
        }
    }

    fn set_response_header(&self, name: &str, value: &str) {
        let mut s = self.0.borrow_mut();
        s.response_headers.retain(|(k, _)| k != name);
        s.response_headers.push((name.to_string(), value.to_string()));
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.0.borrow_mut().headers.push((name.to_string(), value.as_bytes().to_vec()));
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        let s = self.0.borrow();
        s.body[..size.min(s.body.len())].to_vec()
    }

    fn request_trailers(&self) -> Vec<(String, Vec<u8>)> {
        self.0.borrow().trailers.clone()
    }

    fn remove_request_trailer(&self, name: &str) {
        self.0.borrow_mut().trailers.retain(|(k, _)| k != name);
    }

    fn send_response(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
        let headers = headers.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.0.borrow_mut().reply = Some(Reply { status, headers, body: body.to_vec() });
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        metadata: Vec<(&str, &[u8])>,
        message: &[u8],
        _timeout: Duration,
    ) -> Result<u32, Status> {
        let mut s = self.0.borrow_mut();
        if s.refuse_dispatch {
            return Err(Status::NotFound);
        }
        s.calls.push(Call {
            cluster: cluster.into(),
            service: service.into(),
            method: method.into(),
            metadata: metadata.into_iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
            message: message.to_vec(),
        });
        Ok(u32::try_from(s.calls.len()).unwrap_or(u32::MAX))
    }

    fn grpc_response(&self, size: usize) -> Option<Vec<u8>> {
        self.0.borrow().grpc_response.as_ref().map(|b| b[..size.min(b.len())].to_vec())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key: Vec<String> = path.iter().map(|p| p.to_string()).collect();
        self.0.borrow().properties.get(&key).cloned()
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> bool {
        let key = path.iter().map(|p| p.to_string()).collect();
        self.0.borrow_mut().properties.insert(key, value.to_vec());
        true
    }

    fn resume(&self) {
        self.0.borrow_mut().resumed = true;
    }

    fn warn(&self, message: &str) {
        self.0.borrow_mut().warnings.push(message.to_string());
    }
}
