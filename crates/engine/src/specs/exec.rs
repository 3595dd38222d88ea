//! `exec`: what a front end asks to run in a running container.

use crate::error::{EngineError, Result};

/// An exec request: the command and how to run it (the container's own settings fill
/// what is left unset).
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub privileged: bool,
}

impl ExecSpec {
    /// Docker's rules for an exec that need nothing but the request.
    pub fn validate(&self) -> Result<()> {
        if self.cmd.is_empty() || self.cmd[0].is_empty() {
            return Err(EngineError::Invalid("No exec command specified".into()));
        }
        if let Some(w) = self.workdir.as_deref().filter(|w| !w.is_empty()) {
            if !w.starts_with('/') {
                return Err(EngineError::Invalid(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_needs_a_command_and_an_absolute_workdir() {
        let ok = ExecSpec {
            cmd: vec!["true".into()],
            workdir: Some("/tmp".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        let e = ExecSpec::default().validate().unwrap_err();
        assert_eq!(e.to_string(), "No exec command specified");
        let e = ExecSpec {
            cmd: vec!["true".into()],
            workdir: Some("tmp".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the working directory 'tmp' is invalid, it needs to be an absolute path"
        );
    }
}
