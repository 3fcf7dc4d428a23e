//! The request gate: which phases of a request may pass while its verdict is pending.
//!
//! Envoy hands a request to the filter in phases (headers, any number of body chunks,
//! trailers), and each callback's answer decides whether that phase goes on to the router. A
//! phase that answers `Continue` while a callout is in flight releases the request without its
//! verdict: the SDK's default trailers callback did exactly that. So every phase asks this one
//! state machine, and only the verdict opens the gate. Host-free, so every order of phases is
//! tested natively (below); `http.rs` only turns its answers into hostcalls.

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Nothing decided yet (before the headers phase has run).
    Undecided,
    /// Allowed: every later phase passes.
    Open,
    /// Refused with a local response: nothing passes.
    Closed,
    /// A compute route whose body is being collected before the callout; `body_len` is the
    /// size Envoy has buffered so far.
    Collecting { body_len: usize },
    /// A callout is deciding: everything waits for its verdict.
    Pending,
}

/// What a phase callback must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Let this phase through.
    Pass,
    /// Hold this phase (Envoy buffers it until the verdict resumes the request).
    Hold,
    /// The body is complete: send the callout with `body_len` bytes of it, then hold.
    SendWithBody { body_len: usize },
    /// The body is over the compute limit: refuse with 413.
    TooLarge,
}

impl Gate {
    /// A body chunk arrived; `buffered` is all Envoy holds so far.
    pub fn on_body(&mut self, buffered: usize, end_of_stream: bool, max_body: usize) -> Step {
        match *self {
            Gate::Open => Step::Pass,
            // Undecided cannot happen (headers come first); holding is the safe answer.
            Gate::Undecided | Gate::Closed | Gate::Pending => Step::Hold,
            Gate::Collecting { .. } if buffered > max_body => {
                *self = Gate::Closed;
                Step::TooLarge
            }
            Gate::Collecting { .. } if end_of_stream => {
                *self = Gate::Pending;
                Step::SendWithBody { body_len: buffered }
            }
            Gate::Collecting { .. } => {
                *self = Gate::Collecting { body_len: buffered };
                Step::Hold
            }
        }
    }

    /// The trailers arrived: the body, if any, is complete.
    pub fn on_trailers(&mut self) -> Step {
        match *self {
            Gate::Open => Step::Pass,
            Gate::Undecided | Gate::Closed | Gate::Pending => Step::Hold,
            Gate::Collecting { body_len } => {
                *self = Gate::Pending;
                Step::SendWithBody { body_len }
            }
        }
    }

    /// The callout answered: allow opens the gate, anything else closes it.
    pub fn on_verdict(&mut self, allowed: bool) {
        *self = if allowed { Gate::Open } else { Gate::Closed };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 100;

    /// One phase of a request, as Envoy delivers it.
    #[derive(Debug, Clone, Copy)]
    enum Phase {
        Body { buffered: usize, eos: bool },
        Trailers,
        Verdict(bool),
    }

    /// Replays `phases` after the headers left the gate in `start`; returns whether any phase
    /// passed (was released towards the upstream) before an allow verdict.
    fn released_early(start: Gate, phases: &[Phase]) -> bool {
        let mut gate = start;
        let mut allowed = start == Gate::Open;
        for p in phases {
            let step = match *p {
                Phase::Body { buffered, eos } => gate.on_body(buffered, eos, MAX),
                Phase::Trailers => gate.on_trailers(),
                Phase::Verdict(ok) => {
                    // A verdict only comes for a callout that was sent.
                    if gate == Gate::Pending {
                        gate.on_verdict(ok);
                        allowed |= ok;
                    }
                    continue;
                }
            };
            if step == Step::Pass && !allowed {
                return true;
            }
        }
        false
    }

    /// Every interleaving of up to two body chunks, trailers and a verdict, from every state
    /// the headers phase can leave: nothing passes before an allow.
    #[test]
    fn no_phase_releases_a_request_before_its_verdict() {
        let chunks = [
            Phase::Body { buffered: 10, eos: false },
            Phase::Body { buffered: 20, eos: true },
            Phase::Body { buffered: 500, eos: false },
            Phase::Trailers,
            Phase::Verdict(true),
            Phase::Verdict(false),
        ];
        let starts = [Gate::Pending, Gate::Closed, Gate::Collecting { body_len: 0 }, Gate::Undecided];
        let mut cases = 0;
        for start in starts {
            for a in chunks {
                for b in chunks {
                    for c in chunks {
                        for d in chunks {
                            cases += 1;
                            assert!(!released_early(start, &[a, b, c, d]), "{start:?} {a:?} {b:?} {c:?} {d:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 4 * 6usize.pow(4));
    }

    #[test]
    fn trailers_end_a_collected_body() {
        let mut g = Gate::Collecting { body_len: 0 };
        assert_eq!(g.on_body(30, false, MAX), Step::Hold);
        assert_eq!(g.on_trailers(), Step::SendWithBody { body_len: 30 });
        assert_eq!(g, Gate::Pending);
        assert_eq!(g.on_trailers(), Step::Hold);
        g.on_verdict(true);
        assert_eq!(g.on_body(40, true, MAX), Step::Pass);
        assert_eq!(g.on_trailers(), Step::Pass);
    }

    #[test]
    fn trailers_without_a_body_send_an_empty_one() {
        let mut g = Gate::Collecting { body_len: 0 };
        assert_eq!(g.on_trailers(), Step::SendWithBody { body_len: 0 });
    }

    #[test]
    fn an_oversized_body_closes_the_gate() {
        let mut g = Gate::Collecting { body_len: 0 };
        assert_eq!(g.on_body(MAX + 1, false, MAX), Step::TooLarge);
        assert_eq!(g.on_body(MAX + 2, true, MAX), Step::Hold);
        assert_eq!(g.on_trailers(), Step::Hold);
    }

    #[test]
    fn a_denial_holds_everything_after_it() {
        let mut g = Gate::Pending;
        g.on_verdict(false);
        assert_eq!(g.on_body(1, true, MAX), Step::Hold);
        assert_eq!(g.on_trailers(), Step::Hold);
    }
}
