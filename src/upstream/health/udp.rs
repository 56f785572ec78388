//! The `udp` probe, which Pingora lacks: send one datagram from a fresh connected
//! socket and wait for the answer.
//!
//! With `expect`, the backend is up when an answer containing those bytes arrives in
//! time. Without it, silence is not a failure (many UDP services answer only valid
//! requests): the backend is down only when its host refuses the port, which a
//! connected socket learns from the ICMP "port unreachable" as `ECONNREFUSED`.

use async_trait::async_trait;
use pingora_core::{Error, ErrorType, OrErr, Result};
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::Backend;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The largest answer read; longer ones are cut (only `expect` looks at them).
const MAX_ANSWER: usize = 65_535;

/// One `udp` health check.
pub(super) struct UdpHealthCheck {
    /// The datagram sent.
    pub(super) send: Vec<u8>,
    /// What the answer must contain.
    pub(super) expect: Option<Vec<u8>>,
    /// How long to wait for the answer: a little under the pool's check `timeout`,
    /// so that silence is judged here rather than by the recorder's timeout.
    pub(super) wait: Duration,
    /// Consecutive successes before a down backend is used again.
    pub(super) rise: usize,
    /// Consecutive failures before an up backend is taken out.
    pub(super) fall: usize,
}

#[async_trait]
impl HealthCheck for UdpHealthCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let Some(addr) = target.addr.as_inet().copied() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "not an IP backend");
        };
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local)
            .await
            .or_err(ErrorType::BindError, "binding the probe socket")?;
        socket
            .connect(addr)
            .await
            .or_err(ErrorType::ConnectError, "connecting the probe socket")?;
        socket
            .send(&self.send)
            .await
            .or_err(ErrorType::WriteError, "sending the probe")?;
        let mut answer = vec![0u8; MAX_ANSWER];
        match tokio::time::timeout(self.wait, socket.recv(&mut answer)).await {
            Ok(Ok(n)) => judge(&answer[..n], self.expect.as_deref()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Error::e_explain(ErrorType::ConnectRefused, "port unreachable (ICMP)")
            }
            Ok(Err(e)) => Err(e).or_err(ErrorType::ReadError, "reading the answer"),
            Err(_) if self.expect.is_none() => Ok(()),
            Err(_) => Error::e_explain(
                ErrorType::ReadTimedout,
                format!("no answer within {:?}", self.wait),
            ),
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.rise
        } else {
            self.fall
        }
    }
}

/// Whether `answer` passes: it contains `expect`, or anything does without one.
fn judge(answer: &[u8], expect: Option<&[u8]>) -> Result<()> {
    match expect {
        Some(e) if !e.is_empty() && !answer.windows(e.len()).any(|w| w == e) => Error::e_explain(
            ErrorType::InvalidHTTPHeader,
            format!(
                "the answer ({} bytes) does not contain {:?}",
                answer.len(),
                String::from_utf8_lossy(e)
            ),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_passes_when_it_contains_expect() {
        assert!(judge(b"+PONG\r\n", Some(b"PONG")).is_ok());
        assert!(judge(b"anything", None).is_ok());
        assert!(judge(b"", Some(b"")).is_ok());
        let e = judge(b"-ERR", Some(b"PONG")).unwrap_err();
        assert!(e.to_string().contains("does not contain \"PONG\""), "{e}");
    }

    fn check(expect: Option<&[u8]>) -> UdpHealthCheck {
        UdpHealthCheck {
            send: b"ping".to_vec(),
            expect: expect.map(<[u8]>::to_vec),
            wait: Duration::from_millis(300),
            rise: 1,
            fall: 1,
        }
    }

    #[tokio::test]
    async fn probes_a_real_socket() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let answer = if &buf[..n] == b"ping" {
                    &b"pong"[..]
                } else {
                    b"?"
                };
                let _ = server.send_to(answer, from).await;
            }
        });
        let backend = Backend::new(&addr.to_string()).unwrap();
        check(Some(b"pong")).check(&backend).await.unwrap();
        check(None).check(&backend).await.unwrap();
        let e = check(Some(b"PONG")).check(&backend).await.unwrap_err();
        assert!(e.to_string().contains("does not contain"), "{e}");
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let backend = Backend::new(&addr.to_string()).unwrap();
        let e = check(None).check(&backend).await.unwrap_err();
        assert!(e.to_string().contains("port unreachable"), "{e}");
        let e = check(Some(b"pong")).check(&backend).await.unwrap_err();
        assert!(e.to_string().contains("port unreachable"), "{e}");
    }
}
