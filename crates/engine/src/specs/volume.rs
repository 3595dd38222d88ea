//! `volume create`: what a front end asks for, and Docker's rules for it.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// What `volume create` asks for.
#[derive(Debug, Clone, Default)]
pub struct VolumeSpec {
    /// None: a random name, and the volume is anonymous (as Docker makes one).
    pub name: Option<String>,
    /// `local` (or empty, the same) is the only driver.
    pub driver: String,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Docker's rule for a local volume's name.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl VolumeSpec {
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.driver.as_str(), "" | "local") {
            // There are no plugins: Docker's words for a driver it cannot find.
            let d = &self.driver;
            return Err(EngineError::NotFound(format!(
                "error looking up volume plugin {d}: plugin \"{d}\" not found"
            )));
        }
        if !self.driver_opts.is_empty() {
            return Err(EngineError::NotImplemented(
                "volume driver options (type, device, o) are not implemented yet in berth".into(),
            ));
        }
        if let Some(n) = self.name.as_deref().filter(|n| !valid_name(n)) {
            return Err(EngineError::Invalid(format!(
                "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    #[test]
    fn volume_rules_refuse_with_dockers_words_and_classes() {
        VolumeSpec::default().validate().unwrap();
        let class = |f: fn(&mut VolumeSpec)| {
            let mut s = VolumeSpec::default();
            f(&mut s);
            s.validate().unwrap_err().class()
        };
        assert_eq!(class(|s| s.driver = "nfs".into()), ErrorClass::NotFound);
        assert_eq!(
            class(|s| {
                s.driver_opts.insert("type".into(), "tmpfs".into());
            }),
            ErrorClass::NotImplemented
        );
        assert_eq!(
            class(|s| s.name = Some("/etc".into())),
            ErrorClass::InvalidArgument
        );
        assert!(valid_name("db-data.1") && !valid_name("x") && !valid_name("-x"));
    }
}
