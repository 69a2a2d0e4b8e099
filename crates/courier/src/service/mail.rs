//! Outgoing mail (optional, `--smtp-url`): the "forgot password" link. lettre over rustls; the
//! link carries its one-time token in the URL fragment, and neither is ever logged.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Where people open the app (`https://chat.example.org`), for links in mail.
    public_url: String,
}

impl Mailer {
    /// `url`: `smtp://host:port` (plain), `smtp://host?tls=required` (STARTTLS) or
    /// `smtps://user:pass@host` (TLS).
    pub fn new(url: &str, from: &str, public_url: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("--smtp-url: {e}"))?
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("--smtp-from {from:?}: {e}"))?;
        Ok(Self {
            transport,
            from,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    pub async fn send_reset_link(
        &self,
        to: &str,
        username: &str,
        token: &str,
    ) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("address: {e}"))?;
        let link = format!("{}/#reset={token}", self.public_url);
        let body = format!(
            "Someone asked to reset the password of your Courier account \"{username}\".\n\n\
             Open this link within the hour to choose a new password (it works once):\n\n{link}\n\n\
             If it was not you, ignore this mail: your password stays as it is.\n"
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Reset your Courier password")
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
