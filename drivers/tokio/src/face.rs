//! The async face of the Tub handle: futures over its callback forms.
//! They need no particular runtime (an answer arrives through a oneshot
//! channel), so an [`AsyncTub`] may wrap a Tub of any engine; objects
//! answering from `async` blocks ([`answer_async`]) need a tokio runtime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use foolscap_app::{Call, Error, Reconnector, Tub};
use foolscap_core::broker::Failure;
use foolscap_core::furl::Furl;
use foolscap_core::value::{RemoteRef, Text, Value};
use tokio::sync::oneshot;

/// A [`Tub`] with async methods. It dereferences to the Tub, so every
/// method of the handle (register, listen, the blocking and callback
/// forms) is there too; the async ones of the same name take precedence.
/// Clones share the Tub.
#[derive(Clone, Debug)]
pub struct AsyncTub {
    tub: Tub,
}

impl std::ops::Deref for AsyncTub {
    type Target = Tub;
    fn deref(&self) -> &Tub {
        &self.tub
    }
}

impl From<Tub> for AsyncTub {
    fn from(tub: Tub) -> AsyncTub {
        AsyncTub { tub }
    }
}

impl From<AsyncTub> for Tub {
    fn from(t: AsyncTub) -> Tub {
        t.tub
    }
}

/// The answer to a call or a lookup, to `.await`. The message is already
/// sent when the `Reply` exists: start many, then await them. Dropping
/// it stops waiting (the answer, when it comes, is dropped); the
/// connection is not affected.
#[must_use = "a Reply does nothing unless awaited (the call is sent already)"]
#[derive(Debug)]
pub struct Reply {
    state: ReplyState,
}

#[derive(Debug)]
enum ReplyState {
    Waiting(oneshot::Receiver<Result<Value, Error>>),
    Ready(Option<Result<Value, Error>>),
}

impl Reply {
    fn channel() -> (impl FnOnce(Result<Value, Error>) + Send + 'static, Reply) {
        let (tx, rx) = oneshot::channel();
        let send = move |r| {
            let _ = tx.send(r);
        };
        (
            send,
            Reply {
                state: ReplyState::Waiting(rx),
            },
        )
    }

    fn ready(r: Result<Value, Error>) -> Reply {
        Reply {
            state: ReplyState::Ready(Some(r)),
        }
    }
}

impl Future for Reply {
    type Output = Result<Value, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            ReplyState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(Error::Shutdown))),
            // a dropped sender: the Tub went away without answering
            ReplyState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Shutdown))),
        }
    }
}

impl AsyncTub {
    /// Wraps a Tub handle (of any engine).
    pub fn new(tub: Tub) -> AsyncTub {
        AsyncTub { tub }
    }

    /// The blocking and callback handle.
    pub fn tub(&self) -> &Tub {
        &self.tub
    }

    /// Connects to the Tub of `furl` (or reuses the connection) and
    /// resolves to the reference ([`Tub::get_reference_async`]). No
    /// timeout of its own: wrap it in `tokio::time::timeout` for one.
    pub fn get_reference(&self, furl: &str) -> Reply {
        match Furl::parse(furl) {
            Ok(furl) => {
                let (done, reply) = Reply::channel();
                self.tub.get_reference_async(&furl, done);
                reply
            }
            Err(e) => Reply::ready(Err(e.into())),
        }
    }

    /// Calls `method` with Python's positional `args` and keyword
    /// `kwargs` and resolves to the answer ([`Tub::call_async`]). Sent
    /// at once; see [`Reply`] for cancellation.
    pub fn call(
        &self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Reply {
        let (done, reply) = Reply::channel();
        match self.tub.call_async(target, method, args, kwargs, done) {
            Ok(()) => reply,
            Err(e) => Reply::ready(Err(e)),
        }
    }

    /// Python's `callRemoteOnly`: sends the call, wants no answer.
    pub fn call_only(
        &self,
        target: &RemoteRef,
        method: &str,
        args: &[Value],
        kwargs: &[(Text, Value)],
    ) -> Result<(), Error> {
        self.tub.call_only(target, method, args, kwargs)
    }

    /// Resolves when the connection `reference` lives on ends (at once if
    /// it has). Dropping the future forgets the watch.
    pub async fn disconnected(&self, reference: &RemoteRef) {
        struct Watch<'a>(&'a Tub, u64);
        impl Drop for Watch<'_> {
            fn drop(&mut self) {
                self.0.cancel_disconnect_watch(self.1);
            }
        }
        let (tx, rx) = oneshot::channel::<()>();
        let token = self.tub.notify_on_disconnect(reference, move || {
            let _ = tx.send(());
        });
        let _watch = Watch(&self.tub, token);
        let _ = rx.await;
    }

    /// A clean shutdown of this Tub: stops listening, lets the answers to
    /// calls already received go out (waiting at most `grace` for them),
    /// then [`Tub::shutdown`]: connections close, our outstanding calls
    /// fail with [`Error::Shutdown`]. The async form of
    /// [`Tub::shutdown_within`].
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.tub.stop_listening();
        // answers are made by objects on the engine: look again after
        // each short sleep (no timer is asserted on; this only bounds the
        // wait)
        while self.tub.calls_to_answer() > 0 && tokio::time::Instant::now() < deadline {
            let step = tokio::time::Instant::now() + Duration::from_millis(5);
            tokio::time::sleep_until(step.min(deadline)).await;
        }
        self.tub.shutdown();
    }
}

impl AsyncTub {
    /// Python's `Tub.connectTo` on the async face ([`Tub::connect_to`]):
    /// keeps a connection to `furl`, reconnecting on Python's schedule
    /// whenever it is lost or an attempt fails; each new connection's
    /// reference comes out of [`Connections::next`].
    pub fn connect_to(&self, furl: &str) -> Result<Connections, Error> {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let reconnector = self.tub.connect_to(furl, move |v| {
            if let Some(r) = foolscap_app::as_remote(&v) {
                // only the newest matters: an older one's connection is gone
                tx.send_replace(Some(r.clone()));
            }
        })?;
        Ok(Connections { rx, reconnector })
    }
}

/// The connections [`AsyncTub::connect_to`] makes, one reference per
/// connection. Holds one (the newest not yet taken): a consumer that is
/// late skips references whose connection was lost meanwhile. Dropping it
/// stops the reconnection (unlike [`Reconnector`], which the Tub keeps).
#[derive(Debug)]
pub struct Connections {
    rx: tokio::sync::watch::Receiver<Option<RemoteRef>>,
    reconnector: Reconnector,
}

impl Connections {
    /// The reference of the next connection: at once if one was made
    /// since the last call, else when the next one is. `None` once the
    /// reconnector is stopped ([`Reconnector::stop`], or the Tub's
    /// shutdown).
    pub async fn next(&mut self) -> Option<RemoteRef> {
        loop {
            if self.rx.changed().await.is_err() {
                return None;
            }
            if let Some(r) = self.rx.borrow_and_update().clone() {
                return Some(r);
            }
        }
    }

    /// The reconnector: its state ([`Reconnector::info`]), `reset`, `stop`.
    pub fn reconnector(&self) -> &Reconnector {
        &self.reconnector
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        self.reconnector.stop();
    }
}

/// Answers `call` with what `work` resolves to, later: `work` is spawned
/// on the current tokio runtime (objects of the tokio engine run inside
/// one). The object returns at once; its method is in effect an
/// `async fn`. If `work` panics or the runtime drops it, the call is
/// answered with a failure (as an unanswered [`Call`] is when dropped).
///
/// # Panics
/// Outside a tokio runtime.
pub fn answer_async<F>(call: Call, work: F)
where
    F: Future<Output = Result<Value, Failure>> + Send + 'static,
{
    tokio::spawn(async move {
        let result = work.await;
        call.reply(result);
    });
}
