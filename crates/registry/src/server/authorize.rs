//! Who may do what: the scopes a request needs, checking them against the rules (Basic or
//! bearer), and Docker's token endpoint.

use super::*;

/// The token service's name, in challenges and tokens.
pub(super) const SERVICE: &str = "berth-registry";

/// What a request needs: (repository, action) pairs; an empty list means "any
/// authenticated client" (the base endpoint, the catalog).
pub(super) fn needs(
    method: &Method,
    r: &Route,
    q: &[(String, String)],
) -> Vec<(String, &'static str)> {
    let action: &'static str = match *method {
        Method::GET | Method::HEAD => "pull",
        Method::DELETE => "delete",
        _ => "push",
    };
    match r {
        Route::Base | Route::Catalog => Vec::new(),
        Route::Tags(n) | Route::Referrers(n, _) => vec![(n.clone(), "pull")],
        Route::Manifest(n, _) | Route::Blob(n, _) => vec![(n.clone(), action)],
        Route::Upload(n, _) => vec![(n.clone(), "push")],
        Route::UploadStart(n) => {
            let mut v = vec![(n.clone(), "push")];
            if let (Some(_), Some(from)) = (param(q, "mount"), param(q, "from")) {
                v.push((from.to_string(), "pull"));
            }
            v
        }
    }
}

/// Checks the request's credentials against what it needs; the error is the 401 (with a
/// Bearer challenge for the scope) or 403 to send.
pub(super) fn authorize(state: &State, req: &Request<Body>) -> Result<(), ApiError> {
    let Some(access) = &state.access else {
        return Ok(());
    };
    let Some(r) = route(req.uri().path()) else {
        return Ok(());
    };
    let q = query(req.uri());
    let needed = needs(req.method(), &r, &q);
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scope = needed
        .iter()
        .map(|(repo, action)| format!("repository:{repo}:{action}"))
        .collect::<Vec<_>>()
        .join(" ");
    let challenge = || {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        );
        let mut c = format!(
            "Bearer realm=\"{}://{host}/token\",service=\"{SERVICE}\"",
            if state.tls { "https" } else { "http" }
        );
        if !scope.is_empty() {
            c.push_str(&format!(",scope=\"{scope}\""));
        }
        e.headers.push((header::WWW_AUTHENTICATE, c));
        e
    };
    let denied = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
        )
    };
    use crate::access::Identity;
    if let Some(t) = auth.strip_prefix("Bearer ") {
        for (repo, action) in &needed {
            match access.token(t.trim(), Some(repo), action) {
                None => return Err(challenge()),
                Some((_, true)) => {}
                // The token was made for other scopes: ask for one; the rules may refuse.
                Some((id, false)) => {
                    let ask = id == Identity::Anonymous || access.allowed(&id, repo, action);
                    return Err(if ask { challenge() } else { denied() });
                }
            }
        }
        if needed.is_empty() && access.token(t.trim(), None, "").is_none() {
            return Err(challenge());
        }
        return Ok(());
    }
    let who = if auth.starts_with("Basic ") {
        access.basic(auth).ok_or_else(challenge)?
    } else {
        Identity::Anonymous
    };
    if needed.is_empty() {
        return if who == Identity::Anonymous {
            Err(challenge())
        } else {
            Ok(())
        };
    }
    for (repo, action) in &needed {
        if !access.allowed(&who, repo, action) {
            return Err(if who == Identity::Anonymous {
                challenge()
            } else {
                denied()
            });
        }
    }
    Ok(())
}

/// `GET /token?service=…&scope=…`: Docker's token service. Basic credentials, when
/// given, must be right; the token grants what the rules allow of the scopes asked.
pub(super) fn token_endpoint(state: &State, req: &Request<Body>) -> Response<Body> {
    let Some(access) = &state.access else {
        return error_response(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "UNSUPPORTED",
                "this registry does not use tokens",
            ),
            false,
        );
    };
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let who = if auth.is_empty() {
        crate::access::Identity::Anonymous
    } else {
        match access.basic(auth) {
            Some(w) => w,
            None => {
                return error_response(
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "incorrect username or password",
                    ),
                    false,
                )
            }
        }
    };
    let scopes: Vec<String> = query(req.uri())
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v)
        .collect();
    let token = access.issue(who, &scopes);
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": crate::access::TOKEN_TTL.as_secs(),
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid")
}
