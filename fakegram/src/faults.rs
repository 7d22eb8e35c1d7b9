//! Faults a test injects: an RPC error such as `FLOOD_WAIT_X` on any method, a dropped
//! connection, a request that is carried out but whose reply is lost, a slow reply, and an
//! answer of the test's own (what real Telegram sends and the model does not, such as
//! `auth.sentCodePaymentRequired`).
//! Each fault matches a method (or any) and optionally a data centre, may let some
//! matching calls pass first, and fires a number of times.

use std::time::Duration;

/// What happens to a request a fault matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The request fails with this error and has no effect.
    Error {
        /// The error code (420 for flood waits, 400, 401, 403, 406, 500…).
        code: i32,
        /// The error's name, such as `FLOOD_WAIT_30`.
        message: String,
    },
    /// The connection closes before the request is read (nothing happens).
    Drop,
    /// The request is carried out, then the connection closes before the reply is sent.
    LoseReply,
    /// The reply comes this much later.
    Delay(Duration),
    /// The request is not carried out; this answer (a serialized TL object) is sent
    /// instead.
    Reply(Vec<u8>),
}

/// One injected fault (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The TL method name (`upload.saveFilePart`), or `None` for any method.
    pub method: Option<String>,
    /// Only in this data centre.
    pub dc: Option<i32>,
    /// Only for calls of this account (by user id).
    pub account: Option<i64>,
    /// Matching calls let through before it fires.
    pub skip: u32,
    /// How many times it fires (`u32::MAX`: for ever).
    pub times: u32,
    /// What it does.
    pub action: Action,
}

impl Fault {
    fn new(method: Option<&str>, action: Action) -> Fault {
        Fault {
            method: method.map(str::to_owned),
            dc: None,
            account: None,
            skip: 0,
            times: 1,
            action,
        }
    }

    /// `FLOOD_WAIT_<seconds>` (420) on `method` (`None`: any method).
    pub fn flood_wait(method: Option<&str>, seconds: u32) -> Fault {
        Fault::new(
            method,
            Action::Error {
                code: 420,
                message: format!("FLOOD_WAIT_{seconds}"),
            },
        )
    }

    /// Any RPC error on `method`.
    pub fn error(method: Option<&str>, code: i32, message: &str) -> Fault {
        Fault::new(
            method,
            Action::Error {
                code,
                message: message.to_owned(),
            },
        )
    }

    /// The connection drops when `method` arrives (it is not carried out).
    pub fn drop_connection(method: Option<&str>) -> Fault {
        Fault::new(method, Action::Drop)
    }

    /// `method` is carried out but its reply never arrives (the connection closes).
    pub fn lose_reply(method: Option<&str>) -> Fault {
        Fault::new(method, Action::LoseReply)
    }

    /// `method`'s reply is sent `by` later.
    pub fn delay(method: Option<&str>, by: Duration) -> Fault {
        Fault::new(method, Action::Delay(by))
    }

    /// `method` is answered with `answer` (a serialized TL object) and not carried out.
    pub fn reply(method: &str, answer: Vec<u8>) -> Fault {
        Fault::new(Some(method), Action::Reply(answer))
    }

    /// Only in data centre `dc`.
    pub fn in_dc(mut self, dc: i32) -> Fault {
        self.dc = Some(dc);
        self
    }

    /// Only for calls of account `id` (one bot of several, say).
    pub fn for_account(mut self, id: i64) -> Fault {
        self.account = Some(id);
        self
    }

    /// Lets `n` matching calls through first.
    pub fn after(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }

    /// Fires `n` times (`u32::MAX`: on every matching call).
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    fn matches(&self, method: &str, dc: i32, account: Option<i64>) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.dc.is_none_or(|d| d == dc)
            && self.account.is_none_or(|a| Some(a) == account)
    }
}

/// The queue of faults not yet spent.
#[derive(Debug, Default)]
pub struct Faults {
    queue: Vec<Fault>,
}

impl Faults {
    /// Adds a fault (after those already queued).
    pub fn push(&mut self, fault: Fault) {
        self.queue.push(fault);
    }

    /// Faults not yet spent.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// The action for a call of `method` in `dc`: the first matching fault that is due
    /// fires (and is counted down); matching faults still skipping count this call.
    pub fn take(&mut self, method: &str, dc: i32) -> Option<Action> {
        self.take_for(method, dc, None)
    }

    /// [`Faults::take`] for a call of `account` (`None`: not signed in).
    pub fn take_for(&mut self, method: &str, dc: i32, account: Option<i64>) -> Option<Action> {
        let mut fired = None;
        for (i, f) in self.queue.iter_mut().enumerate() {
            if !f.matches(method, dc, account) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            if f.times != u32::MAX {
                f.times -= 1;
            }
            fired = Some((i, f.action.clone()));
            break;
        }
        let (i, action) = fired?;
        if self.queue[i].times == 0 {
            self.queue.remove(i);
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_skip_and_count_down() {
        let mut f = Faults::default();
        f.push(
            Fault::flood_wait(Some("upload.saveFilePart"), 5)
                .after(1)
                .times(2),
        );
        f.push(Fault::drop_connection(None).in_dc(4));
        assert_eq!(f.take("upload.saveFilePart", 2), None, "skipped once");
        assert!(matches!(
            f.take("upload.saveFilePart", 2),
            Some(Action::Error { code: 420, .. })
        ));
        assert_eq!(f.take("messages.sendMedia", 2), None);
        assert_eq!(f.take("messages.sendMedia", 4), Some(Action::Drop));
        assert!(matches!(
            f.take("upload.saveFilePart", 2),
            Some(Action::Error { .. })
        ));
        assert_eq!(f.take("upload.saveFilePart", 2), None);
        assert_eq!(f.pending(), 0);
    }
}
