//! `authz.v1.Control/Subscribe`: pushes the current keys to each filter VM, then every change.

use std::pin::Pin;
use std::sync::Arc;

use authz_proto::authz::v1::control_server::Control;
use authz_proto::authz::v1::{ControlEvent, KeySnapshot, SubscribeRequest, control_event};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::keystore::KeyStore;
use crate::metrics::Metrics;

pub struct ControlService {
    keys: Arc<KeyStore>,
    metrics: Arc<Metrics>,
}

impl ControlService {
    pub fn new(keys: Arc<KeyStore>, metrics: Arc<Metrics>) -> Self {
        Self { keys, metrics }
    }
}

/// Counts a subscriber for as long as its stream lives.
struct Subscriber(Arc<Metrics>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.control_subscribers.dec();
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ControlEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let node = request.into_inner().node;
        info!(%node, "control stream opened");
        self.metrics.control_subscribers.inc();
        let guard = Subscriber(Arc::clone(&self.metrics));
        // WatchStream yields the current state first, then each change.
        let stream = WatchStream::new(self.keys.subscribe()).filter_map(move |state| {
            let _alive = &guard;
            let event = (!state.jwks_json.is_empty()).then(|| {
                Ok(ControlEvent {
                    event: Some(control_event::Event::Keys(KeySnapshot {
                        version: state.version,
                        jwks_json: state.jwks_json.clone(),
                    })),
                })
            });
            futures::future::ready(event)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
