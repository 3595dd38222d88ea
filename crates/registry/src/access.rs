//! Who may do what on `berth registry serve`: users from an htpasswd file (bcrypt), rules
//! from the registry's config file, and the built-in token service that lets clients use
//! Docker Hub's Bearer flow.
//!
//! Without a config file, every authenticated user may pull, push and delete everything
//! and anonymous clients nothing. A config file lists rules; what a client may do is the
//! union of the rules that match it:
//!
//! ```toml
//! [[access]]
//! users = ["anonymous"]        # "anonymous", "*" (any authenticated user) or names
//! repositories = ["public/*"]  # globs; "*" matches across "/"
//! actions = ["pull"]           # "pull", "push", "delete"
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

/// How long a token lives.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub access: Vec<Rule>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for r in &c.access {
            for a in &r.actions {
                if !["pull", "push", "delete", "*"].contains(&a.as_str()) {
                    return Err(format!("{}: unknown action {a:?}", path.display()));
                }
            }
        }
        Ok(c)
    }
}

/// `*` matches any run of characters, `/` included.
pub fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.starts_with(head)
                && (0..=s.len() - head.len()).any(|i| {
                    let rest = &s[head.len() + i..];
                    s.is_char_boundary(head.len() + i) && glob(tail, rest)
                })
        }
    }
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

struct Token {
    identity: Identity,
    /// (repository, action) pairs granted.
    grants: Vec<(String, String)>,
    expires: Instant,
}

pub struct Access {
    users: HashMap<String, String>,
    config: Option<Config>,
    /// sha256(user:password) of logins bcrypt already accepted: bcrypt is slow on purpose.
    verified: Mutex<HashMap<[u8; 32], String>>,
    tokens: Mutex<HashMap<String, Token>>,
}

impl Access {
    /// Users from an htpasswd file (`user:$2y$…` lines; bcrypt only).
    pub fn new(htpasswd: &Path, config: Option<Config>) -> Result<Access, String> {
        let text = std::fs::read_to_string(htpasswd)
            .map_err(|e| format!("{}: {e}", htpasswd.display()))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, h) = line
                .split_once(':')
                .ok_or_else(|| format!("{}:{}: not user:hash", htpasswd.display(), n + 1))?;
            if !h.starts_with("$2") {
                return Err(format!(
                    "{}:{}: only bcrypt hashes are supported (htpasswd -B)",
                    htpasswd.display(),
                    n + 1
                ));
            }
            users.insert(u.to_string(), h.to_string());
        }
        Ok(Access {
            users,
            config,
            verified: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Checks a user's password.
    pub fn login(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = sha2::Sha256::digest(format!("{user}:{password}")).into();
        if self
            .verified
            .lock()
            .expect("not poisoned")
            .get(&key)
            .is_some_and(|u| u == user)
        {
            return true;
        }
        let ok = self
            .users
            .get(user)
            .is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false));
        if ok {
            self.verified
                .lock()
                .expect("not poisoned")
                .insert(key, user.to_string());
        }
        ok
    }

    /// Does a `Basic` header name a valid login? `Some(None)` when it is malformed or wrong.
    pub fn basic(&self, header: &str) -> Option<Identity> {
        let b64 = header.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        self.login(u, p).then(|| Identity::User(u.to_string()))
    }

    /// May `who` do `action` on `repo`, by the rules?
    pub fn allowed(&self, who: &Identity, repo: &str, action: &str) -> bool {
        let Some(cfg) = &self.config else {
            return matches!(who, Identity::User(_));
        };
        cfg.access.iter().any(|r| {
            let user_ok = r.users.iter().any(|u| match (u.as_str(), who) {
                ("anonymous", Identity::Anonymous) => true,
                ("*", Identity::User(_)) => true,
                (name, Identity::User(n)) => name == n,
                _ => false,
            });
            user_ok
                && r.repositories.iter().any(|p| glob(p, repo))
                && r.actions.iter().any(|a| a == action || a == "*")
        })
    }

    /// Issues a token for the scopes asked (`repository:NAME:ACTIONS`), granting what the
    /// rules allow.
    pub fn issue(&self, who: Identity, scopes: &[String]) -> String {
        let mut grants = Vec::new();
        for s in scopes {
            for scope in s.split(' ') {
                let mut parts = scope.splitn(3, ':');
                let (Some("repository"), Some(repo), Some(actions)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                for a in actions.split(',') {
                    let a = if a == "*" { "delete" } else { a };
                    if self.allowed(&who, repo, a) {
                        grants.push((repo.to_string(), a.to_string()));
                    }
                }
            }
        }
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the kernel gives random bytes");
        let token = hex::encode(b);
        let mut tokens = self.tokens.lock().expect("not poisoned");
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.clone(),
            Token {
                identity: who,
                grants,
                expires: now + TOKEN_TTL,
            },
        );
        token
    }

    /// The identity behind a token and whether it grants `action` on `repo` (`None` for
    /// an unknown or expired token).
    pub fn token(&self, token: &str, repo: Option<&str>, action: &str) -> Option<(Identity, bool)> {
        let tokens = self.tokens.lock().expect("not poisoned");
        let t = tokens.get(token).filter(|t| t.expires > Instant::now())?;
        let granted = match repo {
            None => true,
            Some(r) => t.grants.iter().any(|(gr, ga)| gr == r && ga == action),
        };
        Some((t.identity.clone(), granted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_across_slashes() {
        assert!(glob("*", "a/b/c"));
        assert!(glob("team/*", "team/x/y"));
        assert!(!glob("team/*", "other/x"));
        assert!(glob("a*c", "abbbc"));
        assert!(!glob("a*c", "abbb"));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn rules_grant_the_union_of_what_matches() {
        let cfg: Config = toml::from_str(
            r#"
            [[access]]
            users = ["anonymous"]
            repositories = ["public/*"]
            actions = ["pull"]
            [[access]]
            users = ["alice"]
            repositories = ["*"]
            actions = ["pull", "push"]
            "#,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("h");
        std::fs::write(&h, format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
        let a = Access::new(&h, Some(cfg)).unwrap();
        assert!(a.login("alice", "pw") && !a.login("alice", "nope") && !a.login("bob", "pw"));
        let alice = Identity::User("alice".into());
        assert!(a.allowed(&Identity::Anonymous, "public/x", "pull"));
        assert!(!a.allowed(&Identity::Anonymous, "public/x", "push"));
        assert!(!a.allowed(&Identity::Anonymous, "private/x", "pull"));
        assert!(a.allowed(&alice, "private/x", "push"));
        assert!(!a.allowed(&alice, "private/x", "delete"));
        let t = a.issue(
            alice.clone(),
            &["repository:team/x:pull,push,delete".into()],
        );
        assert_eq!(
            a.token(&t, Some("team/x"), "push"),
            Some((alice.clone(), true))
        );
        assert_eq!(a.token(&t, Some("team/x"), "delete"), Some((alice, false)));
        assert_eq!(a.token("bogus", None, "pull"), None);
    }
}
