//! The Kubernetes Container Runtime Interface (CRI v1) over berth's engine: `berth cri`
//! serves `runtime.v1.ImageService` and `runtime.v1.RuntimeService` over gRPC on a unix
//! socket, as kubelet and crictl speak it.
//!
//! A thin front end: each call opens the engine on a blocking thread and makes the same
//! engine call the CLI makes (an image pulled by `berth pull` is one kubelet sees). Error
//! classes become gRPC codes in one place ([`status_of`]).
//!
//! What is served so far: the image service whole (list, status, pull, remove, file
//! system usage), and the runtime service's `Version`, `Status` and `RuntimeConfig`. Pods and containers
//! (sandboxes, CNI, streaming) are not implemented yet: those calls answer
//! `UNIMPLEMENTED` with a message naming them, never a pretend success.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::Path;

use berth_engine::pods::PodNetwork;
use berth_engine::{Engine, EngineError, EngineOptions, ErrorClass};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::{Request, Response, Status};

mod containers;
mod images;
mod pods;
mod stats;
pub mod stream;

/// The CRI version berth speaks.
pub const API_VERSION: &str = "v1";

/// The CRI service over one root (what every call opens).
#[derive(Debug, Clone)]
pub struct Cri {
    opts: EngineOptions,
    net: PodNetwork,
    /// The monitors of the containers this service started: its children.
    reaper: std::sync::Arc<berth_engine::containers::Reaper>,
    cpu: std::sync::Arc<stats::CpuSamples>,
    /// Where `Exec`, `Attach` and `PortForward` send their clients.
    streams: std::sync::Arc<stream::Server>,
}

impl Cri {
    /// The service; a thread reaps the monitors it starts as their containers end.
    pub fn new(
        opts: EngineOptions,
        net: PodNetwork,
        streams: std::sync::Arc<stream::Server>,
    ) -> Self {
        // As the engine keeps them (see `engine`, which compares).
        let mut opts = opts;
        for p in [&mut opts.root, &mut opts.run_root] {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
        let reaper = std::sync::Arc::new(berth_engine::containers::Reaper::default());
        let weak = std::sync::Arc::downgrade(&reaper);
        std::thread::spawn(move || {
            while let Some(r) = weak.upgrade() {
                r.reap();
                drop(r);
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        });
        Cri {
            opts,
            net,
            reaper,
            cpu: Default::default(),
            streams,
        }
    }

    /// The id of a running container of kubelet's.
    async fn running_container(&self, id: String) -> Result<String, Status> {
        self.engine(move |e| {
            let (rec, _) = Self::cri_container(e, &id)?;
            let st = e.container_state(&rec.id).map_err(status_of)?;
            if !st.status.is_active() {
                return Err(Status::failed_precondition(format!(
                    "container {} is not running",
                    rec.id
                )));
            }
            Ok(rec.id)
        })
        .await
    }

    /// A container of this service's (one in a pod), with its CRI metadata.
    fn cri_container(
        e: &Engine,
        id: &str,
    ) -> Result<(berth_engine::model::ContainerRecord, containers::CriMeta), Status> {
        let rec = e.find_container(id).map_err(status_of)?;
        match (rec.pod.is_some(), containers::CriMeta::of(&rec)) {
            (true, Some(meta)) => Ok((rec, meta)),
            _ => Err(Status::not_found(format!("no such container: {id}"))),
        }
    }

    /// Runs `f` with an engine on a blocking thread (the engine is synchronous). Each of
    /// the runtime's blocking threads keeps the engine it opened for the calls that
    /// follow (opening one costs a database connection, its WAL set-up and the stores'
    /// directories: most of a short call's time).
    async fn engine<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let opts = self.opts.clone();
        tokio::task::spawn_blocking(move || {
            THREAD_ENGINE.with(|slot| {
                let mut slot = slot.borrow_mut();
                let engine = match slot.take() {
                    Some(e) if e.opts.root == opts.root && e.opts.run_root == opts.run_root => e,
                    _ => Engine::open(opts).map_err(status_of)?,
                };
                let out = f(&engine);
                *slot = Some(engine);
                out
            })
        })
        .await
        .map_err(|e| Status::internal(format!("the engine call failed: {e}")))?
    }
}

thread_local! {
    /// The engine of a blocking thread of the service (see [`Cri::engine`]).
    static THREAD_ENGINE: std::cell::RefCell<Option<Engine>> = const { std::cell::RefCell::new(None) };
}

/// The gRPC status of an engine error: the one place the CRI service decides a code.
pub fn status_of(e: EngineError) -> Status {
    let msg = berth_engine::monitor::error_chain(&e);
    match e.class() {
        ErrorClass::NotFound => Status::not_found(msg),
        ErrorClass::Conflict => Status::failed_precondition(msg),
        ErrorClass::InvalidArgument => Status::invalid_argument(msg),
        ErrorClass::Unavailable => Status::unavailable(msg),
        ErrorClass::NotImplemented => Status::unimplemented(msg),
        ErrorClass::Internal => Status::internal(msg),
    }
}

/// CRI's rules for a streaming request's streams.
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout and stderr must be asked for",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true: a terminal has one output",
        ));
    }
    Ok(())
}

fn not_yet(call: &str) -> Status {
    Status::unimplemented(format!(
        "{call} is not implemented yet in berth's CRI service"
    ))
}

/// Serves CRI on the unix socket `path` (made anew, its directory too; an old socket
/// there is replaced) until ctrl-c or SIGTERM.
pub async fn serve_unix(
    path: &Path,
    opts: EngineOptions,
    net: PodNetwork,
    stream_address: std::net::SocketAddr,
) -> std::io::Result<()> {
    let streams = stream::Server::start(stream_address, opts.clone())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // An old socket goes; anything else at the path is the user's, and an error.
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let cri = Cri::new(opts, net, streams);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let served = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(cri.clone()))
        .add_service(ImageServiceServer::new(cri))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    served.map_err(std::io::Error::other)
}

/// Declares runtime-service calls that answer UNIMPLEMENTED, naming themselves. (In the
/// boxed-future form `async_trait` gives the trait's methods: the attribute does not see
/// inside a macro.)
macro_rules! not_yet {
    ($($name:ident($req:ident) -> $resp:ident as $call:literal;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                _request: Request<cri::$req>,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = Result<Response<cri::$resp>, Status>>
                        + Send
                        + 'async_trait,
                >,
            >
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move { Err(not_yet($call)) })
            }
        )*
    };
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        _request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        // The engine opens: the runtime is ready. The network is ready when there is a
        // CNI configuration to give pods (kubelet schedules no pods before).
        self.engine(|_| Ok(())).await?;
        let conf_dir = self.net.conf_dir.clone();
        let network = tokio::task::spawn_blocking(move || berth_net::cni::load(&conf_dir))
            .await
            .map_err(|e| Status::internal(format!("reading the CNI configuration: {e}")))?;
        let (net_ready, net_reason, net_message) = match network {
            Ok(Some(_)) => (true, String::new(), String::new()),
            Ok(None) => (
                false,
                "NetworkPluginNotReady".to_string(),
                format!(
                    "no CNI network configuration in {}",
                    self.net.conf_dir.display()
                ),
            ),
            Err(e) => (false, "NetworkPluginNotReady".to_string(), e.to_string()),
        };
        let condition =
            |kind: &str, ready: bool, reason: &str, message: &str| cri::RuntimeCondition {
                r#type: kind.into(),
                status: ready,
                reason: reason.into(),
                message: message.into(),
            };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    condition("RuntimeReady", true, "", ""),
                    condition("NetworkReady", net_ready, &net_reason, &net_message),
                ],
            }),
            ..Default::default()
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        // berth manages cgroups itself, under `/berth/ID` (cgroupfs), never through
        // systemd: kubelet must use the same driver.
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let config = req.config.unwrap_or_default();
        let spec = pods::pod_spec(&config, &req.runtime_handler)?;
        let net = self.net.clone();
        let id = self
            .engine(move |e| e.run_pod(&spec, &net).map_err(status_of))
            .await?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.engine(move |e| pods::missing_is_done(e.stop_pod(&id)).map_err(status_of))
            .await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.engine(move |e| pods::missing_is_done(e.remove_pod(&id)).map_err(status_of))
            .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id;
        let pod = self.engine(move |e| e.pod(&id).map_err(status_of)).await?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(pods::status(&pod)),
            info: if req.verbose {
                pods::info(&pod)
            } else {
                Default::default()
            },
            containers_statuses: Vec::new(),
            timestamp: 0,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let pods = self.engine(|e| e.pods().map_err(status_of)).await?;
        Ok(Response::new(cri::ListPodSandboxResponse {
            items: pods
                .iter()
                .filter(|p| pods::matches(p, &filter))
                .map(pods::sandbox)
                .collect(),
        }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let config = req.config.unwrap_or_default();
        let id = self
            .engine(move |e| {
                let pod = e.pod(&req.pod_sandbox_id).map_err(status_of)?;
                let spec = containers::container_spec(&pod, &config)?;
                if let Some(path) = spec.host_config.log_config.config.get("path") {
                    // kubelet makes the pod's log dir; the container's may be below it.
                    if let Some(dir) = Path::new(path).parent() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            Status::internal(format!("making {}: {e}", dir.display()))
                        })?;
                    }
                }
                e.create_container(spec)
                    .map(|(id, _)| id)
                    .map_err(status_of)
            })
            .await?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let reaper = self.reaper.clone();
        self.engine(move |e| {
            let (rec, _) = Self::cri_container(e, &id)?;
            if let Some(mut handle) = e.start_container(&rec.id, false).map_err(status_of)? {
                reaper.adopt(handle.child.take());
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = request.into_inner();
        self.engine(move |e| {
            // Stopping one that is gone is done, as kubelet expects.
            let rec = match Self::cri_container(e, &req.container_id) {
                Ok((rec, _)) => rec,
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
                Err(s) => return Err(s),
            };
            match e.stop_container(&rec.id, Some(req.timeout.max(0))) {
                Ok(()) | Err(EngineError::NotRunning { .. }) => Ok(()),
                Err(err) => pods::missing_is_done(Err(err)).map_err(status_of),
            }
        })
        .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.engine(move |e| match Self::cri_container(e, &id) {
            Ok((rec, _)) => {
                pods::missing_is_done(e.remove_container(&rec.id, true, true)).map_err(status_of)
            }
            // Removing one that is gone is done, as kubelet expects.
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        })
        .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let list = self
            .engine(move |e| {
                let mut out = Vec::new();
                for rec in e.container_records().map_err(status_of)? {
                    let Some(meta) = rec.pod.as_ref().and(containers::CriMeta::of(&rec)) else {
                        continue;
                    };
                    let st = e.container_state(&rec.id).map_err(status_of)?;
                    let c = containers::container(&rec, &meta, &st);
                    if containers::matches(&c, &filter) {
                        out.push(c);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(cri::ListContainersResponse {
            containers: list,
        }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let (status, info) = self
            .engine(move |e| {
                let (rec, meta) = Self::cri_container(e, &req.container_id)?;
                let st = e.container_state(&rec.id).map_err(status_of)?;
                let info = if req.verbose {
                    let doc = serde_json::json!({"record": rec, "state": st, "pid": st.pid});
                    HashMap::from([("info".to_string(), doc.to_string())])
                } else {
                    HashMap::new()
                };
                Ok((containers::status(&rec, &meta, &st), info))
            })
            .await?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(status),
            info,
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let update = containers::update_spec(&req.linux.unwrap_or_default())?;
        self.engine(move |e| {
            let (rec, _) = Self::cri_container(e, &req.container_id)?;
            e.update_container(&rec.id, &update).map_err(status_of)
        })
        .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        self.engine(move |e| {
            let (rec, _) = Self::cri_container(e, &id)?;
            e.reopen_container_log(&rec.id).map_err(status_of)
        })
        .await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let out = self
            .engine(move |e| {
                let (rec, _) = Self::cri_container(e, &req.container_id)?;
                let spec = berth_engine::specs::ExecSpec {
                    cmd: req.cmd,
                    ..Default::default()
                };
                let timeout =
                    (req.timeout > 0).then(|| std::time::Duration::from_secs(req.timeout as u64));
                match e.exec_sync(&rec.id, &spec, timeout) {
                    Ok(out) => Ok(out),
                    // A command that cannot run is an exit code, as in a shell.
                    Err(EngineError::Start { code, message }) if code == 126 || code == 127 => {
                        Ok(berth_engine::exec::ExecOutput {
                            exit_code: code,
                            stdout: Vec::new(),
                            stderr: format!("{message}\n").into_bytes(),
                        })
                    }
                    // kubelet tells a probe's timeout by this code.
                    Err(EngineError::Unavailable(m)) if m.contains("timed out") => {
                        Err(Status::deadline_exceeded(m))
                    }
                    Err(err) => Err(status_of(err)),
                }
            })
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        let cpu = self.cpu.clone();
        let stats = self
            .engine(move |e| {
                let (rec, meta) = Self::cri_container(e, &id)?;
                Ok(stats::container_stats(e, &rec, &meta, &cpu))
            })
            .await?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let cpu = self.cpu.clone();
        let stats = self
            .engine(move |e| {
                stats::list_container_stats(e, &cpu, |rec, meta| {
                    rec.id.starts_with(&filter.id)
                        && rec
                            .pod
                            .as_deref()
                            .is_some_and(|p| p.starts_with(&filter.pod_sandbox_id))
                        && filter
                            .label_selector
                            .iter()
                            .all(|(k, v)| meta.labels.get(k) == Some(v))
                })
                .map_err(status_of)
            })
            .await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let cpu = self.cpu.clone();
        let stats = self
            .engine(move |e| {
                let pod = e.pod(&id).map_err(status_of)?;
                stats::pod_stats(e, &pod, &cpu).map_err(status_of)
            })
            .await?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let cpu = self.cpu.clone();
        let stats = self
            .engine(move |e| {
                let mut out = Vec::new();
                for pod in e.pods().map_err(status_of)? {
                    let labels = &pod.record.spec.labels;
                    if pod.record.id.starts_with(&filter.id)
                        && filter
                            .label_selector
                            .iter()
                            .all(|(k, v)| labels.get(k) == Some(v))
                    {
                        out.push(stats::pod_stats(e, &pod, &cpu).map_err(status_of)?);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let r = request.into_inner();
        check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("an exec needs a command"));
        }
        let id = self.running_container(r.container_id).await?;
        let url = self.streams.url(stream::Request::Exec {
            container: id,
            cmd: r.cmd,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        });
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let r = request.into_inner();
        check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
        let id = self.running_container(r.container_id).await?;
        let url = self.streams.url(stream::Request::Attach {
            container: id,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        });
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let pod = self.engine(move |e| e.pod(&id).map_err(status_of)).await?;
        if pod.state != berth_engine::pods::PodState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                pod.record.id
            )));
        }
        let url = self
            .streams
            .url(stream::Request::PortForward { pod: pod.record.id });
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    type GetContainerEventsStream =
        tokio_stream::wrappers::ReceiverStream<Result<cri::ContainerEventResponse, Status>>;

    /// The events of kubelet's containers from now on (evented PLEG), from the engine's
    /// event log, polled every 100 ms on a thread that ends with the stream.
    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let opts = self.opts.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let e = Engine::open(opts).map_err(status_of)?;
        let mut seq = e.last_event_seq().map_err(status_of)?;
        std::thread::spawn(move || loop {
            let events = match e.events_after(seq, None, None) {
                Ok(events) => events,
                Err(err) => {
                    let _ = tx.blocking_send(Err(status_of(err)));
                    return;
                }
            };
            for ev in events {
                seq = ev.seq;
                let cri_container = ev.kind == "container"
                    && ev.actor.attributes.contains_key(containers::CRI_LABEL);
                let Some(kind) = stats::event_type(&ev.action).filter(|_| cri_container) else {
                    continue;
                };
                let status = Self::cri_container(&e, &ev.actor.id)
                    .ok()
                    .and_then(|(rec, meta)| {
                        let st = e.container_state(&rec.id).ok()?;
                        Some((containers::status(&rec, &meta, &st), rec.pod))
                    });
                let pod = status
                    .as_ref()
                    .and_then(|(_, p)| e.pod(p.as_deref()?).ok())
                    .map(|p| pods::status(&p));
                let event = cri::ContainerEventResponse {
                    container_id: ev.actor.id.clone(),
                    container_event_type: kind.into(),
                    created_at: ev.time_nano,
                    pod_sandbox_status: pod,
                    containers_statuses: status.into_iter().map(|(s, _)| s).collect(),
                };
                if tx.blocking_send(Ok(event)).is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    not_yet! {
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse as "UpdateRuntimeConfig";
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse as "CheckpointContainer";
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse as "ListMetricDescriptors";
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse as "ListPodSandboxMetrics";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_error_classes_become_grpc_codes() {
        use tonic::Code;
        let code = |e: EngineError| status_of(e).code();
        assert_eq!(code(EngineError::NoSuchImage("x".into())), Code::NotFound);
        assert_eq!(
            code(EngineError::Conflict("x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(EngineError::Invalid("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code(EngineError::NotImplemented("x".into())),
            Code::Unimplemented
        );
        assert_eq!(
            status_of(EngineError::NoSuchImage("web:2".into())).message(),
            "no such image: web:2"
        );
    }
}
