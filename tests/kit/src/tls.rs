//! A throwaway certificate authority for TLS tests: a CA, a server certificate for
//! `localhost` / `127.0.0.1` and a client certificate, all signed by the CA, written as PEM
//! files into a fresh directory that is removed on drop.
//!
//! Two [`TestPki`]s have unrelated CAs, so a client that trusts one rejects a server of the
//! other.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files of one test CA and the certificates it signed.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Generates a CA, a server and a client certificate (ECDSA P-256) into a new directory.
    pub fn generate() -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "otap-df-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let pki = Self { dir };
        pki.write_all()
            .map_err(|e| format!("cannot generate test certificates: {e}"))?;
        Ok(pki)
    }

    fn write_all(&self) -> Result<(), Box<dyn std::error::Error>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        // A name of its own, so that another test CA is an unknown issuer, not a bad signature.
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("otap-df test CA {}", name.unwrap_or_default()),
        );
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        self.write("ca.pem", &ca.pem())?;

        for (name, purpose, sans) in [
            (
                "server",
                ExtendedKeyUsagePurpose::ServerAuth,
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ),
            (
                "client",
                ExtendedKeyUsagePurpose::ClientAuth,
                vec!["otap-df-client".to_owned()],
            ),
        ] {
            let mut params = CertificateParams::new(sans)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("otap-df test {name}"));
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![purpose];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate()?;
            let certificate = params.signed_by(&key, &ca)?;
            self.write(&format!("{name}.pem"), &certificate.pem())?;
            self.write(&format!("{name}-key.pem"), &key.serialize_pem())?;
        }
        Ok(())
    }

    fn write(&self, name: &str, pem: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(name), pem)
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate (valid for `localhost` and `127.0.0.1`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }

    /// The client certificate (for mutual TLS).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client-key.pem")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
