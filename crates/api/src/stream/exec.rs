//! Exec over the API: create, inspect, resize and start, the process started by the
//! container's monitor (on pipes this service reads, or a terminal it is sent).

use super::*;

pub(super) fn strings(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// `POST /containers/{id}/exec`: records what to run; `exec/{id}/start` runs it.
pub(crate) fn exec_create(svc: &Service, e: &Engine, id: &str, body: &[u8]) -> Response<Body> {
    let v = match body_json(body) {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let spec = ExecSpec {
        cmd: strings(&v, "Cmd"),
        env: strings(&v, "Env"),
        workdir: Some(s("WorkingDir")).filter(|w| !w.is_empty()),
        user: Some(s("User")).filter(|u| !u.is_empty()),
        tty: b("Tty"),
        privileged: b("Privileged"),
    };
    let rec = match e.exec_check(id, &spec) {
        Ok(r) => r,
        Err(err) => return engine_error(err),
    };
    let entry = ExecEntry {
        id: berth_engine::names::new_id(),
        container_id: rec.id.clone(),
        cmd: spec.cmd,
        env: spec.env,
        workdir: s("WorkingDir"),
        user: s("User"),
        tty: b("Tty"),
        privileged: b("Privileged"),
        stdin: b("AttachStdin"),
        stdout: b("AttachStdout"),
        stderr: b("AttachStderr"),
        state: Mutex::default(),
    };
    let exec_id = entry.id.clone();
    let mut execs = svc.execs.lock().expect("execs lock");
    execs.retain(|_, x| {
        x.state
            .lock()
            .expect("exec lock")
            .ended
            .is_none_or(|t| t.elapsed() < EXEC_KEPT)
    });
    execs.insert(exec_id.clone(), Arc::new(entry));
    json_response(StatusCode::CREATED, &json!({"Id": exec_id}))
}

pub(super) fn find_exec(svc: &Service, id: &str) -> Option<Arc<ExecEntry>> {
    svc.execs.lock().expect("execs lock").get(id).cloned()
}

pub(super) fn no_such_exec(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("No such exec instance: {id}"),
    )
}

/// `GET /exec/{id}/json`.
pub(crate) fn exec_inspect(svc: &Service, id: &str) -> Response<Body> {
    let Some(x) = find_exec(svc, id) else {
        return no_such_exec(id);
    };
    let st = x.state.lock().expect("exec lock");
    let (entrypoint, args) = x.cmd.split_first().expect("a command");
    json_response(
        StatusCode::OK,
        &json!({
            "ID": x.id,
            "Running": st.running,
            "ExitCode": st.exit_code,
            "ProcessConfig": {
                "tty": x.tty, "entrypoint": entrypoint, "arguments": args,
                "privileged": x.privileged, "user": x.user,
            },
            "OpenStdin": x.stdin,
            "OpenStderr": x.stderr,
            "OpenStdout": x.stdout,
            "CanRemove": false,
            "ContainerID": x.container_id,
            "DetachKeys": "",
            "Pid": st.pid,
        }),
    )
}

/// `POST /exec/{id}/resize?h=&w=`.
pub(crate) fn exec_resize(svc: &Service, id: &str, q: &[(String, String)]) -> Response<Body> {
    let Some(x) = find_exec(svc, id) else {
        return no_such_exec(id);
    };
    let Some((h, w)) = size_of(q) else {
        return error(StatusCode::BAD_REQUEST, "resize needs h and w");
    };
    let master = x.state.lock().expect("exec lock").master.clone();
    match master {
        Some(m) => match berth_engine::monitor::set_winsize(m.as_fd(), h, w) {
            Ok(()) => json_response(StatusCode::OK, &Value::Null),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("resize: {err}")),
        },
        None => error(
            StatusCode::CONFLICT,
            format!("exec {id} has no terminal to resize"),
        ),
    }
}

/// Checks that `x` can run (its container running, its user known) and writes its
/// process file (blocking).
pub(super) fn prepare_exec(
    roots: &Roots,
    x: &ExecEntry,
    detach: bool,
) -> Result<PreparedExec, EngineError> {
    let e = Engine::open(EngineOptions::new(&roots.root, &roots.run_root))?;
    let opts = ExecSpec {
        cmd: x.cmd.clone(),
        env: x.env.clone(),
        workdir: Some(x.workdir.clone()).filter(|w| !w.is_empty()),
        user: Some(x.user.clone()).filter(|u| !u.is_empty()),
        tty: x.tty && !detach,
        privileged: x.privileged,
    };
    e.exec_prepare(&x.container_id, &opts)
}

/// Starts a prepared exec through its container's monitor (blocking).
pub(super) fn start_exec(
    roots: &Roots,
    x: &ExecEntry,
    prepared: PreparedExec,
    detach: bool,
) -> Result<Started, EngineError> {
    let streams = if detach {
        Streams::Detached
    } else if x.tty {
        Streams::Terminal
    } else {
        Streams::Pipes { stdin: x.stdin }
    };
    prepared.start_with(&roots.run_root, &x.id[..12], streams)
}

/// `POST /exec/{id}/start`: runs the command, on the hijacked connection unless
/// `Detach`.
pub(crate) async fn exec_start(
    svc: Arc<Service>,
    id: String,
    req: Request<Body>,
) -> Response<Body> {
    let Some(x) = find_exec(&svc, &id) else {
        return no_such_exec(&id);
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {err}")),
    };
    let v = if bytes.is_empty() {
        json!({})
    } else {
        match body_json(&bytes) {
            Ok(v) => v,
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        }
    };
    {
        let mut st = x.state.lock().expect("exec lock");
        if st.started {
            return error(
                StatusCode::CONFLICT,
                format!("exec {id} has already been started"),
            );
        }
        st.started = true;
    }
    let detach = v.get("Detach").and_then(Value::as_bool).unwrap_or(false);
    let size = v
        .get("ConsoleSize")
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)));
    let (roots, xs) = (svc.roots.clone(), x.clone());
    let prepared = tokio::task::spawn_blocking(move || prepare_exec(&roots, &xs, detach))
        .await
        .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("exec: {e}"))));
    let prepared = match prepared {
        Ok(p) => p,
        // Not running, paused, gone: refused before anything ran.
        Err(err) => {
            x.state.lock().expect("exec lock").ended_with(None);
            return engine_error(err);
        }
    };
    if detach {
        let (roots, xs) = (svc.roots.clone(), x.clone());
        let started = tokio::task::spawn_blocking(move || start_exec(&roots, &xs, prepared, true))
            .await
            .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("exec: {e}"))));
        let process = match started {
            Ok(Started::Detached(p)) => p,
            Ok(_) => unreachable!("a detached start is detached"),
            Err(err) => {
                let code = err.start_code().map(i32::from);
                x.state.lock().expect("exec lock").ended_with(code);
                return engine_error(err);
            }
        };
        x.state
            .lock()
            .expect("exec lock")
            .started_as(process.pid, None);
        tokio::task::spawn_blocking(move || {
            let code = process.wait().ok();
            x.state.lock().expect("exec lock").ended_with(code);
        });
        return json_response(StatusCode::OK, &Value::Null);
    }
    // The process starts once the connection is the client's stream, as Docker's daemon
    // starts it: output sent before the client has read the upgrade's headers can be
    // lost by clients that read them through a buffer (docker-py).
    let req = Request::from_parts(parts, Body::empty());
    let tty = x.tty;
    let roots = svc.roots.clone();
    hijack(req, tty, move |input, mut out| async move {
        let xs = x.clone();
        let started = tokio::task::spawn_blocking(move || start_exec(&roots, &xs, prepared, false))
            .await
            .unwrap_or_else(|e| Err(EngineError::Unavailable(format!("exec: {e}"))));
        let code = match started {
            Ok(Started::Terminal { process, master }) => {
                run_tty_exec(&x, process, master, size, input, &mut out)
                    .await
                    .ok()
            }
            Ok(Started::Pipes {
                process,
                stdin,
                stdout,
                stderr,
            }) => {
                let streams = [stdin, Some(stdout), Some(stderr)];
                run_piped_exec(&x, process, streams, input, &mut out)
                    .await
                    .ok()
            }
            Ok(Started::Detached(_)) => unreachable!("only a detached start is detached"),
            Err(err) => {
                // The program could not start: its words go to the client's stream, as
                // Docker's daemon writes them, and its code is Docker's (126, 127).
                let msg = format!("{}\r\n", berth_engine::monitor::error_chain(&err));
                let _ = write_out(&mut out, tty, 2, msg.as_bytes()).await;
                Some(err.start_code().map_or(126, i32::from))
            }
        };
        x.state.lock().expect("exec lock").ended_with(code);
        let _ = out.shutdown().await;
    })
}

/// Waits for an exec's process to end (the monitor reports it) and stops feeding it.
async fn finish_exec(
    process: ExecProcess,
    feeder: Option<tokio::task::JoinHandle<()>>,
) -> std::io::Result<i32> {
    let code = tokio::task::spawn_blocking(move || process.wait())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other);
    if let Some(f) = feeder {
        f.abort();
    }
    code
}

/// A non-tty exec: the command's stdout and stderr as multiplexed frames.
async fn run_piped_exec(
    x: &ExecEntry,
    process: ExecProcess,
    [stdin, stdout, stderr]: [Option<OwnedFd>; 3],
    input: Option<ClientIn>,
    out: &mut ClientOut,
) -> std::io::Result<i32> {
    x.state
        .lock()
        .expect("exec lock")
        .started_as(process.pid, None);
    let file = |fd: Option<OwnedFd>| fd.map(|f| tokio::fs::File::from_std(std::fs::File::from(f)));
    let feeder = match (file(stdin), input) {
        (Some(mut to), Some(mut from)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
        })),
        _ => None,
    };
    let (mut so, mut se) = (
        file(stdout).expect("a stdout pipe"),
        file(stderr).expect("a stderr pipe"),
    );
    let (mut b1, mut b2) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let (mut o_open, mut e_open) = (true, true);
    while o_open || e_open {
        tokio::select! {
            r = so.read(&mut b1), if o_open => match r {
                Ok(0) | Err(_) => o_open = false,
                Ok(n) => if x.stdout { write_out(out, false, 1, &b1[..n]).await? },
            },
            r = se.read(&mut b2), if e_open => match r {
                Ok(0) | Err(_) => e_open = false,
                Ok(n) => if x.stderr { write_out(out, false, 2, &b2[..n]).await? },
            },
        }
    }
    finish_exec(process, feeder).await
}

/// A tty exec: the container's terminal, whose master this service was sent; the
/// master's output is the raw stream, resizes go to the master.
async fn run_tty_exec(
    x: &ExecEntry,
    process: ExecProcess,
    master: OwnedFd,
    size: Option<(u16, u16)>,
    input: Option<ClientIn>,
    out: &mut ClientOut,
) -> std::io::Result<i32> {
    if let Some((h, w)) = size.filter(|(h, w)| *h > 0 && *w > 0) {
        berth_engine::monitor::set_winsize(master.as_fd(), h, w)?;
    }
    let master = Arc::new(master);
    x.state
        .lock()
        .expect("exec lock")
        .started_as(process.pid, Some(master.clone()));
    let reader = std::fs::File::from(master.as_fd().try_clone_to_owned()?);
    let mut writer =
        tokio::fs::File::from_std(std::fs::File::from(master.as_fd().try_clone_to_owned()?));
    let feeder = input.map(|mut from| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        // The end of the client's input is the terminal's EOF key.
                        let _ = writer.write_all(&[4]).await;
                        let _ = writer.flush().await;
                        return;
                    }
                    Ok(n) => {
                        if writer.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = writer.flush().await;
                    }
                }
            }
        })
    });
    // The master reads until every holder of the slave is gone (EIO).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut reader = reader;
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if write_out(out, true, 1, &chunk).await.is_err() {
            break;
        }
    }
    finish_exec(process, feeder).await
}
