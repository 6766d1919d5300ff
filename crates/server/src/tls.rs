//! Optional TLS for gRPC: the server's certificate and key, and, when a client CA is given,
//! client certificates required of every caller (service-to-service mutual TLS). Off unless
//! configured; plaintext on loopback is the local default.

use std::path::PathBuf;
use std::sync::RwLock;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// TLS flags shared by every binary.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// PEM certificate chain the gRPC server presents (with --tls-key turns TLS on).
    #[arg(long, env = "TRACKING_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TRACKING_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates the server requires (mutual TLS); services then present
    /// their own --tls-cert when calling each other.
    #[arg(long, env = "TRACKING_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA that services trust when calling each other over https:// URLs (default: the
    /// system's roots are not used; give the CA that signed the suite's certificates).
    #[arg(long, env = "TRACKING_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

impl TlsArgs {
    /// The server's TLS configuration; `None` when TLS is off.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, String> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            // Client certificates without TLS would be plaintext with no client checked at all.
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(
                    "TRACKING_TLS_CLIENT_CA needs TRACKING_TLS_CERT and TRACKING_TLS_KEY"
                        .to_owned(),
                );
            }
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (read(cert, "TLS certificate")?, read(key, "TLS key")?),
            _ => return Err("TRACKING_TLS_CERT and TRACKING_TLS_KEY go together".to_owned()),
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.tls_client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        }
        Ok(Some(config))
    }

    /// How this process's services call each other over https:// URLs; `None` when TLS is off.
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, String> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA")?));
        if self.tls_client_ca.is_some()
            && let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key)
        {
            config = config.identity(Identity::from_pem(
                read(cert, "TLS certificate")?,
                read(key, "TLS key")?,
            ));
        }
        Ok(Some(config))
    }
}

static CLIENT: RwLock<Option<ClientTlsConfig>> = RwLock::new(None);

/// Sets how this process's services call each other over https:// URLs (the last setting
/// stands: a process runs one suite, but tests start several, one after another).
pub fn set_client(config: Option<ClientTlsConfig>) {
    if let Some(config) = config
        && let Ok(mut client) = CLIENT.write()
    {
        *client = Some(config);
    }
}

/// The TLS configuration for calls to https:// URLs, when one was set.
pub fn client() -> Option<ClientTlsConfig> {
    CLIENT.read().ok().and_then(|client| client.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_ca_without_a_certificate_is_refused_not_plaintext() {
        let args = TlsArgs {
            tls_client_ca: Some(PathBuf::from("/etc/ssl/client-ca.pem")),
            ..TlsArgs::default()
        };
        let refused = args.server().err().unwrap_or_default();
        assert!(
            refused.starts_with("TRACKING_TLS_CLIENT_CA needs"),
            "{refused}"
        );
        assert!(TlsArgs::default().server().is_ok_and(|c| c.is_none()));
    }
}
