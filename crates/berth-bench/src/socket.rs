//! The load generator's TCP stream: counts the bytes it reads and, while a large
//! response body is arriving, raises the socket's receive low-water mark
//! (`SO_RCVLOWAT`, socket(7)) so that the generator wakes once per
//! [`BODY_LOWAT`] bytes instead of once per segment.
//!
//! Why: on loopback the sender delivers each segment (≤ 64 KiB) to the receiver
//! itself and wakes it if it sleeps. A client that drains the socket faster than
//! the server fills it sleeps after every segment, and the server then pays for
//! waking it: on the 2-core VM of docs/performance.md that was ~30% of the
//! server's CPU on a 200 MiB pull, the same for every registry, so the figure
//! measured the client. Real pullers hash and decompress while they read and
//! rarely sleep; so does a generator with a low-water mark.
//!
//! The mark is never above what is still to come: the body's declared length
//! minus every byte read since its request was sent (the response head makes the
//! true remainder larger, never smaller), and it drops to 1 for the last
//! [`BODY_LOWAT`] bytes, so a read never waits for bytes that will not arrive.
//! Lowering the mark signals readiness at once if enough is queued (Linux ≥ 4.18,
//! `tcp_set_rcvlowat`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Low-water mark while a body has at least this much left to arrive.
pub const BODY_LOWAT: u64 = 256 << 10;

/// What the connection and the requests on it share: bytes read so far and
/// where the body being read ends at the earliest.
#[derive(Debug, Default)]
pub struct Watch {
    read: AtomicU64,
    body_end: AtomicU64,
    off: AtomicBool,
    raised: AtomicU64,
}

impl Watch {
    /// Bytes read from the socket since it opened.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// A body of `len` bytes is the response to a request sent when `read()`
    /// was `sent_at`: use the low-water mark until it is nearly in.
    pub fn expect_body(&self, sent_at: u64, len: u64) {
        self.body_end.store(sent_at + len, Ordering::Relaxed);
    }

    /// The body is read (or abandoned): back to waking on every byte.
    pub fn body_done(&self) {
        self.body_end.store(0, Ordering::Relaxed);
    }

    /// How many times the mark was raised above 1 on this socket.
    pub fn times_raised(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }

    /// The mark a read should wait for now.
    fn lowat(&self) -> usize {
        let left = self
            .body_end
            .load(Ordering::Relaxed)
            .saturating_sub(self.read());
        if left >= BODY_LOWAT && !self.off.load(Ordering::Relaxed) {
            BODY_LOWAT as usize
        } else {
            1
        }
    }
}

/// A `TcpStream` that counts what it reads and applies [`Watch`]'s mark.
#[derive(Debug)]
pub struct WatchedStream {
    tcp: TcpStream,
    watch: Arc<Watch>,
    lowat: usize,
}

impl WatchedStream {
    /// Wrap `tcp`; the returned `Watch` is shared with the requests.
    pub fn new(tcp: TcpStream) -> (WatchedStream, Arc<Watch>) {
        let watch = Arc::new(Watch::default());
        let stream = WatchedStream {
            tcp,
            watch: watch.clone(),
            lowat: 1,
        };
        (stream, watch)
    }

    fn apply_lowat(&mut self) {
        let want = self.watch.lowat();
        if want == self.lowat {
            return;
        }
        match set_rcvlowat(self.tcp.as_fd(), want) {
            Ok(()) => {
                if want > 1 {
                    self.watch.raised.fetch_add(1, Ordering::Relaxed);
                }
                self.lowat = want;
            }
            Err(e) => {
                // Not fatal: the generator reads as it did without the mark.
                tracing::debug!(error = %e, "SO_RCVLOWAT not set; reading without it");
                self.watch.off.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// `setsockopt(SO_RCVLOWAT)`. Hand-written: neither `rustix` 1.1, `nix` 0.32 nor
/// `socket2` 0.6 wrap this option, and it is the only `unsafe` in the crate.
#[allow(unsafe_code)]
fn set_rcvlowat(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is an open socket borrowed for the duration of the call, and
    // the option value is a `c_int` that lives on this stack frame; its exact size
    // is passed, so the kernel reads nothing beyond it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.apply_lowat();
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = (buf.filled().len() - before) as u64;
            self.watch.read.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn the_mark_is_raised_only_while_a_whole_mark_is_still_to_come() {
        let w = Watch::default();
        assert_eq!(w.lowat(), 1, "no body expected");
        w.expect_body(0, 3 * BODY_LOWAT);
        assert_eq!(w.lowat() as u64, BODY_LOWAT);
        w.read.store(2 * BODY_LOWAT, Ordering::Relaxed);
        assert_eq!(w.lowat() as u64, BODY_LOWAT, "exactly one mark left");
        w.read.store(2 * BODY_LOWAT + 1, Ordering::Relaxed);
        assert_eq!(w.lowat(), 1, "less than a mark left: every byte wakes");
        w.read.store(5 * BODY_LOWAT, Ordering::Relaxed);
        assert_eq!(w.lowat(), 1, "read past the end (the head is counted too)");
        // A request sent after bytes were read counts from there.
        w.expect_body(5 * BODY_LOWAT, BODY_LOWAT);
        assert_eq!(w.lowat() as u64, BODY_LOWAT);
        w.body_done();
        assert_eq!(w.lowat(), 1);
    }

    /// A server that sends a head and `len` body bytes in uneven pieces with
    /// pauses, then keeps the connection open (no FIN that would end a wait).
    async fn slow_response(len: usize) -> (TcpStream, tokio::sync::oneshot::Sender<()>, usize) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
        let head_len = head.len();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let body = vec![7u8; len];
            for piece in body.chunks(100_003) {
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            let _ = done_rx.await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        (tcp, done_tx, head_len)
    }

    #[tokio::test]
    async fn bodies_around_the_mark_arrive_whole_without_waiting_for_bytes_that_never_come() {
        let m = BODY_LOWAT as usize;
        for len in [0, 1, m - 1, m, m + 1, 2 * m, 3 * m + 17, 1 << 20] {
            let (tcp, done, head_len) = slow_response(len).await;
            let (mut stream, watch) = WatchedStream::new(tcp);
            watch.expect_body(watch.read(), len as u64);
            let total = head_len + len;
            let mut buf = vec![0u8; 64 << 10];
            while (watch.read() as usize) < total {
                let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "body of {len}: stalled at {} of {total} bytes",
                            watch.read()
                        )
                    })
                    .unwrap();
                assert!(n > 0, "body of {len}: connection closed early");
            }
            assert_eq!(watch.read() as usize, total, "body of {len}");
            if len as u64 >= BODY_LOWAT {
                assert!(
                    watch.times_raised() >= 1,
                    "body of {len}: mark never raised"
                );
            } else {
                assert_eq!(watch.times_raised(), 0, "body of {len}: mark raised");
            }
            watch.body_done();
            drop(done);
        }
    }
}
