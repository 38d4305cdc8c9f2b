//! The Socket Mode listener: accepts TCP connections, checks the single-use
//! ticket during the WebSocket handshake (HTTP 401 when it is unknown or used),
//! and hands each accepted socket to its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::connection;
use crate::params;
use crate::state::Shared;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until the runtime stops.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, Arc::clone(&shared)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn handle(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let callback = TicketCheck(Arc::clone(&shared));
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await
    {
        Ok(Ok(ws)) => connection::run(shared, ws).await,
        Ok(Err(e)) => shared.log(|| format!("websocket handshake refused: {e}")),
        Err(_) => shared.log(|| "websocket handshake timed out".to_string()),
    }
}

/// Accepts the handshake only for `/link…?ticket=T` with a ticket handed out by
/// `apps.connections.open` and not used yet; uses it up.
struct TicketCheck(Arc<Shared>);

impl Callback for TicketCheck {
    fn on_request(self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        let uri = req.uri();
        let ticket = params::query_value(uri.query().unwrap_or(""), "ticket");
        let valid = uri.path().starts_with("/link")
            && ticket.is_some_and(|t| self.0.update(|inner| inner.tickets.remove(&t)));
        if valid {
            Ok(resp)
        } else {
            let mut refusal = ErrorResponse::new(Some("invalid or used ticket".to_string()));
            *refusal.status_mut() = StatusCode::UNAUTHORIZED;
            Err(refusal)
        }
    }
}
