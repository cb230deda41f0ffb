//! Sending email: SMTP (plain, STARTTLS or TLS, with optional credentials), or — in demo mode with
//! no SMTP server configured — `.eml` files in `data_dir/mail/`.
use crate::settings::{NotificationsSettings, SmtpTls};
use eh_platform::Settings;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::time::Duration;

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// One email.
pub struct Email<'a> {
    pub message_id: &'a str,
    /// The template it was rendered from, sent as `X-Earlyhelp-Template` so a council's mail
    /// systems (and tests) can tell the kinds of message apart without reading them.
    pub template: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

impl Mailer {
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let smtp = &NotificationsSettings::from_settings(settings)?.smtp;
        let Some(host) = smtp.host.clone().filter(|h| !h.is_empty()) else {
            if settings.demo_enabled() {
                return Ok(Self::Files(settings.data_dir.join("mail")));
            }
            return Err("smtp.host is required outside demo mode".into());
        };
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| format!("smtp.host: {e}"))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(|e| format!("smtp.host: {e}"))?,
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(smtp.timeout_secs)))
            // A pooled connection for every message the sender has in flight.
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(smtp.max_connections));
        if let (Some(user), Some(pw)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                pw.expose_secret().to_string(),
            ));
        }
        Ok(Self::Smtp(builder.build()))
    }

    /// Sends one email; the error text is what the message's record shows (and the log), with
    /// every email address in it replaced: an SMTP server's refusal often quotes the recipient.
    pub async fn send(&self, email: &Email<'_>) -> Result<(), String> {
        self.send_quoting(email)
            .await
            .map_err(|e| without_addresses(&e))
    }

    async fn send_quoting(&self, email: &Email<'_>) -> Result<(), String> {
        let from: Mailbox = email
            .from
            .parse()
            .map_err(|e| format!("sender {}: {e}", email.from))?;
        let to: Mailbox = email.to.parse().map_err(|e| format!("recipient: {e}"))?;
        let msg = Message::builder()
            .message_id(Some(format!("<{}@earlyhelp>", email.message_id)))
            .from(from)
            .to(to)
            .subject(email.subject)
            .header(TemplateHeader(email.template.to_string()))
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.to_string())
            .map_err(|e| format!("cannot build message: {e}"))?;
        match self {
            Self::Smtp(t) => t
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|e| format!("SMTP: {e}")),
            Self::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = dir.join(format!("{}.eml", email.message_id));
                tokio::fs::write(&path, msg.formatted())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        }
    }
}

/// `text` with everything shaped like an email address (`local@domain`) replaced by `[address]`.
pub fn without_addresses(text: &str) -> String {
    let part = |c: char| c.is_alphanumeric() || "._%+-=@!#$&*/?^`{|}~".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let address = word
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && d.contains('.'));
        out.push_str(if address { "[address]" } else { word.as_str() });
        word.clear();
    };
    for c in text.chars() {
        if part(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// `X-Earlyhelp-Template: <template name>`.
#[derive(Debug, Clone)]
struct TemplateHeader(String);

impl lettre::message::header::Header for TemplateHeader {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Earlyhelp-Template")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_string()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_never_reach_the_error_text() {
        assert_eq!(
            without_addresses(
                "SMTP: permanent error (550): 5.1.1 <dana.marsh@example.org>: Recipient address rejected"
            ),
            "SMTP: permanent error (550): 5.1.1 <[address]>: Recipient address rejected"
        );
        assert_eq!(
            without_addresses("to a.b+c@x.co.uk, then"),
            "to [address], then"
        );
        assert_eq!(
            without_addresses("451 try again @ 10:00"),
            "451 try again @ 10:00"
        );
        assert_eq!(
            without_addresses("user@localhost said no"),
            "user@localhost said no"
        );
    }
}
