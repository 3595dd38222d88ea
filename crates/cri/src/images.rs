//! `runtime.v1.ImageService`: the engine's image store, as kubelet and crictl see it.

use berth_engine::distribution::{insecure_registries, PullOptions};
use berth_engine::images::ImageRow;
use berth_registry::auth::Credentials;

use super::*;

/// The image a request names (`ImageSpec.image`: a reference or an id), or an error.
fn named(spec: Option<&cri::ImageSpec>) -> Result<String, Status> {
    spec.map(|s| s.image.clone())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Status::invalid_argument("no image given"))
}

/// The registry credentials of a pull's `AuthConfig`: a user and password, or `auth`
/// (base64 of `user:password`); None when it gives none. Tokens are refused by name.
fn credentials(a: &cri::AuthConfig) -> Result<Option<Credentials>, Status> {
    use base64::Engine as _;
    if !a.identity_token.is_empty() || !a.registry_token.is_empty() {
        return Err(not_yet("PullImage with an identity or registry token"));
    }
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Some(Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
        }));
    }
    if a.auth.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("AuthConfig.auth is not base64 of user:password");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(a.auth.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials {
        username: username.into(),
        password: password.into(),
    }))
}

/// An image as CRI describes it: its id, full references, digests, size and user.
fn image_of(e: &Engine, row: &ImageRow) -> Result<cri::Image, Status> {
    // An image whose config cannot be read is still listed (without its user): one bad
    // image must not hide the others from kubelet's image manager and its GC.
    let user = e
        .image_config(row)
        .ok()
        .and_then(|c| c.config.user)
        .unwrap_or_default();
    // `USER 1000[:G]` is a uid; `USER name[:G]` a name, resolved by the kubelet's rules.
    let user = user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) => (None, user),
    };
    let repo_digests = e
        .repo_digests(&row.id)
        .map_err(status_of)?
        .into_iter()
        .map(|(repo, digest)| format!("{repo}@{digest}"))
        .collect();
    Ok(cri::Image {
        id: row.id.to_string(),
        repo_tags: row.tags.clone(),
        repo_digests,
        size: row.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: row.id.to_string(),
            ..Default::default()
        }),
        pinned: false,
    })
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let wanted = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|i| !i.is_empty());
        let images = self
            .engine(move |e| {
                let only = match &wanted {
                    Some(name) => match e.find_image(name) {
                        Ok(row) => Some(row.id),
                        Err(EngineError::NoSuchImage(_)) => return Ok(vec![]),
                        Err(err) => return Err(status_of(err)),
                    },
                    None => None,
                };
                e.list_image_rows()
                    .map_err(status_of)?
                    .iter()
                    .filter(|r| only.as_ref().is_none_or(|id| *id == r.id))
                    .map(|r| image_of(e, r))
                    .collect()
            })
            .await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = named(request.image.as_ref())?;
        let verbose = request.verbose;
        let found = self
            .engine(move |e| match e.find_image(&name) {
                // Not there is an empty answer, not an error (kubelet pulls then).
                Err(EngineError::NoSuchImage(_)) => Ok(None),
                Err(err) => Err(status_of(err)),
                Ok(row) => {
                    let image = image_of(e, &row)?;
                    let mut info = std::collections::HashMap::new();
                    if verbose {
                        let inspect = e.inspect_image(&row.id.to_string()).map_err(status_of)?;
                        info.insert(
                            "info".to_string(),
                            serde_json::to_string(&inspect).expect("an image serialises"),
                        );
                    }
                    Ok(Some((image, info)))
                }
            })
            .await?;
        let (image, info) = found.map_or((None, Default::default()), |(i, info)| (Some(i), info));
        Ok(Response::new(cri::ImageStatusResponse { image, info }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = named(request.image.as_ref())?;
        let credentials = request
            .auth
            .as_ref()
            .map(credentials)
            .transpose()?
            .flatten();
        let id = self
            .engine(move |e| {
                let opts = PullOptions {
                    platform: None,
                    insecure: insecure_registries(),
                    credentials,
                };
                e.pull(&name, &opts, &mut |_| {})
                    .map(|p| p.id.to_string())
                    .map_err(status_of)
            })
            .await?;
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = named(request.into_inner().image.as_ref())?;
        self.engine(move |e| match e.find_image(&name) {
            // Already gone is done: kubelet's calls are retried.
            Err(EngineError::NoSuchImage(_)) => Ok(()),
            Err(err) => Err(status_of(err)),
            // The image with all its names, as containerd removes it; gone meanwhile
            // (a concurrent remove) is done too.
            Ok(row) => match e.remove_image(&row.id.to_string(), true) {
                Ok(_) | Err(EngineError::NoSuchImage(_)) => Ok(()),
                Err(err) => Err(status_of(err)),
            },
        })
        .await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let usage = self
            .engine(|e| {
                let used: u64 = e
                    .list_image_rows()
                    .map_err(status_of)?
                    .iter()
                    .map(|r| r.size)
                    .sum();
                Ok(cri::FilesystemUsage {
                    timestamp: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64),
                    fs_id: Some(cri::FilesystemIdentifier {
                        mountpoint: e.root().display().to_string(),
                    }),
                    used_bytes: Some(cri::UInt64Value { value: used }),
                    inodes_used: None,
                })
            })
            .await?;
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: vec![],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_configs_become_credentials() {
        let auth = |f: fn(&mut cri::AuthConfig)| {
            let mut a = cri::AuthConfig::default();
            f(&mut a);
            credentials(&a)
        };
        assert_eq!(auth(|_| {}).unwrap(), None);
        let c = auth(|a| {
            a.username = "alice".into();
            a.password = "pw".into();
        })
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "pw"));
        // base64("bob:s:ecret"): the password may hold colons.
        let c = auth(|a| a.auth = "Ym9iOnM6ZWNyZXQ=".into())
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bob", "s:ecret")
        );
        assert_eq!(
            auth(|a| a.auth = "!!".into()).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            auth(|a| a.registry_token = "t".into()).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
    }
}
