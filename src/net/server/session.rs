//! One peer connection: who it is (certificate and registry), the role it acts in, and the
//! session of that role — publisher, partner or subscriber.

use super::*;

/// One of an entity's connection slots ([`Limits::max_connections_per_entity`]), given back
/// when dropped.
struct EntitySlot {
    shared: Arc<Shared>,
    ord: EntityOrd,
}

impl EntitySlot {
    fn take(shared: &Arc<Shared>, ord: EntityOrd) -> Result<EntitySlot, String> {
        let mut held = lock(&shared.per_entity);
        let n = held.entry(ord).or_insert(0);
        let max = shared.limits.max_connections_per_entity;
        if *n >= max {
            return Err(format!(
                "entity {:?} already holds {max} connections, its limit",
                shared.router.registry().entity(ord).id
            ));
        }
        *n += 1;
        Ok(EntitySlot {
            shared: shared.clone(),
            ord,
        })
    }
}

impl Drop for EntitySlot {
    fn drop(&mut self) {
        let mut held = lock(&self.shared.per_entity);
        if let Some(n) = held.get_mut(&self.ord) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ord);
            }
        }
    }
}

/// Who the peer is, from its verified certificate and the registry.
fn identify(conn: &quinn::Connection, reg: &Registry) -> Result<EntityOrd, String> {
    let chain = conn
        .peer_identity()
        .and_then(|a| a.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no client certificate")?;
    let pc = tls::peer_cert(&chain).map_err(|e| e.to_string())?;
    let ord = match &pc.entity {
        Some(id) => reg
            .by_id(id)
            .ok_or_else(|| format!("entity {id:?} is not in the registry"))?,
        None => reg
            .by_fingerprint(&pc.fingerprint)
            .or_else(|| reg.by_subject(&pc.subject))
            .or_else(|| reg.by_subject(&pc.subject_encoding_order))
            .ok_or_else(|| format!("certificate {:?} names no registered entity", pc.subject))?,
    };
    let e = reg.entity(ord);
    if let Some(fp) = e.fingerprint
        && fp != pc.fingerprint
    {
        return Err(format!(
            "certificate of {:?} does not have the fingerprint the registry holds",
            e.id
        ));
    }
    // Spaces after the commas are a matter of taste; the order may be either.
    let squeeze = |s: &str| s.replace(", ", ",");
    if let Some(s) = &e.subject
        && squeeze(s) != pc.subject
        && squeeze(s) != pc.subject_encoding_order
    {
        return Err(format!(
            "certificate subject {:?} is not the registry's {s:?} for {:?}",
            pc.subject, e.id
        ));
    }
    Ok(ord)
}

fn registry_role(r: WireRole) -> Role {
    match r {
        WireRole::Publisher => Role::Publisher,
        WireRole::Partner => Role::Partner,
        WireRole::Subscriber => Role::Subscriber,
    }
}

/// Why a session ended early.
enum End {
    /// Tell the peer, then close.
    Error(ErrorCode, String),
    /// The connection is gone.
    Lost(String),
}

impl From<WireError> for End {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Frame(f) => End::Error(ErrorCode::PROTOCOL, f.to_string()),
            other => End::Lost(other.to_string()),
        }
    }
}

fn protocol(what: &str, f: &Frame) -> End {
    End::Error(
        ErrorCode::PROTOCOL,
        format!("unexpected {} {what}", frame_name(f)),
    )
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Subscribe { .. } => "Subscribe",
        Frame::Notification { .. } => "Notification",
        Frame::Ack { .. } => "Ack",
        Frame::Gap { .. } => "Gap",
        Frame::PushSnapshot { .. } => "PushSnapshot",
        Frame::SnapshotAccepted { .. } => "SnapshotAccepted",
        Frame::SnapshotRejected { .. } => "SnapshotRejected",
        Frame::PullSnapshot { .. } => "PullSnapshot",
        Frame::TelemetryBatch { .. } => "TelemetryBatch",
        Frame::Hits { .. } => "Hits",
        Frame::Error { .. } => "Error",
        Frame::Close => "Close",
        Frame::PullSince { .. } => "PullSince",
        Frame::PullAnswer { .. } => "PullAnswer",
        Frame::DeliveryReport { .. } => "DeliveryReport",
    }
}

pub(super) async fn connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            // A client without a certificate of the network's CA, or one that gave up.
            tracing::info!("handshake refused or failed: {e}");
            return;
        }
    };
    let peer = conn.remote_address();
    // Who it is, and whether it may hold one more connection, before anything is read.
    let who = identify(&conn, shared.router.registry())
        .and_then(|ord| EntitySlot::take(&shared, ord).map(|slot| (ord, slot)));
    let deadline = shared.limits.first_request_timeout;
    let (mut send, recv) = match tokio::time::timeout(deadline, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        _ => {
            conn.close(close_code::PROTOCOL.into(), b"no request");
            return;
        }
    };
    let mut rd = FrameReader::new(recv);
    rd.set_max(wire::MAX_HELLO_FRAME);
    let result = match who {
        // Refused before reading a byte of what it sends.
        Err(m) => {
            tracing::info!(%peer, "refused: {m}");
            Err(End::Error(ErrorCode::FORBIDDEN, m))
        }
        Ok((ord, _slot)) => session(&conn, &shared, ord, &mut send, &mut rd, shutdown).await,
    };
    let code = match result {
        Ok(()) => {
            let _ = wire::send(&mut send, &Frame::Close).await;
            close_code::OK
        }
        Err(End::Error(code, message)) => {
            tracing::info!(%peer, "closing: {message}");
            if let Some(m) = &shared.metrics {
                m.error(jiff::Timestamp::now(), &message);
            }
            if code == ErrorCode::FORBIDDEN {
                shared.stats.forbidden.fetch_add(1, Ordering::Relaxed);
            }
            let _ = wire::send(&mut send, &Frame::Error { code, message }).await;
            u32::from(code.0)
        }
        Err(End::Lost(m)) => {
            tracing::debug!(%peer, "connection lost: {m}");
            conn.close(close_code::PROTOCOL.into(), b"");
            return;
        }
    };
    let _ = send.finish();
    // Let the peer read the tail: it closes when it has; give up after a while.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    conn.close(code.into(), b"");
}

async fn session(
    _conn: &quinn::Connection,
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    let hello = match tokio::time::timeout(shared.limits.first_request_timeout, rd.next()).await {
        Ok(r) => r?,
        Err(_) => return Err(End::Error(ErrorCode::PROTOCOL, "no Hello".into())),
    };
    let role = match hello {
        Some(Frame::Hello { version, role }) => {
            if version < u16::from(frame::PROTOCOL_VERSION) {
                return Err(End::Error(
                    ErrorCode::UNSUPPORTED_VERSION,
                    format!("protocol version {version} is not supported"),
                ));
            }
            role
        }
        Some(f) => return Err(protocol("before Hello", &f)),
        None => return Err(End::Lost("closed before Hello".into())),
    };
    let entity = shared.router.registry().entity(ord);
    // A publisher reads its own log too: internal cases and sightings land there.
    let may = entity.roles.contains(registry_role(role))
        || (role == WireRole::Subscriber && entity.roles.contains(Role::Publisher));
    if !may {
        return Err(End::Error(
            ErrorCode::FORBIDDEN,
            format!(
                "entity {:?} is not a {} in the registry",
                entity.id,
                registry_role(role).name()
            ),
        ));
    }
    rd.set_max(match role {
        WireRole::Subscriber => wire::MAX_SUBSCRIBER_FRAME,
        WireRole::Partner | WireRole::Publisher => frame::MAX_FRAME_LEN,
    });
    tracing::info!(entity = %entity.id, role = registry_role(role).name(), "session");
    wire::send(
        send,
        &Frame::Hello {
            version: frame::PROTOCOL_VERSION.into(),
            role,
        },
    )
    .await?;
    match role {
        WireRole::Publisher => publisher(shared, ord, send, rd, shutdown).await,
        WireRole::Partner => partner(shared, ord, send, rd, shutdown).await,
        WireRole::Subscriber => subscriber(shared, ord, send, rd, shutdown).await,
    }
}

/// Waits for the next frame, or `None` at the end of the stream or at shutdown.
async fn next_or_shutdown(
    rd: &mut FrameReader,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Frame>, End> {
    if *shutdown.borrow() {
        return Ok(None);
    }
    tokio::select! {
        f = rd.next() => Ok(f?),
        _ = shutdown.changed() => Ok(None),
    }
}

async fn publisher(
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(f) = next_or_shutdown(rd, &mut shutdown).await? {
        match f {
            Frame::PushSnapshot {
                set_version,
                total_len,
                position,
                data,
            } => {
                if position == 0 {
                    if total_len > MAX_SNAPSHOT {
                        return Err(End::Error(
                            ErrorCode::TOO_LARGE,
                            format!("snapshot of {total_len} bytes is over the limit"),
                        ));
                    }
                    // Grown as chunks arrive: an announced length is a claim, not bytes.
                    buf = Vec::with_capacity((total_len as usize).min(4 * SNAPSHOT_CHUNK));
                }
                if position != buf.len() as u64 || buf.len() as u64 + data.len() as u64 > total_len
                {
                    return Err(End::Error(
                        ErrorCode::PROTOCOL,
                        "snapshot chunk out of order".into(),
                    ));
                }
                buf.extend_from_slice(&data);
                if buf.len() as u64 == total_len {
                    let bytes = std::mem::take(&mut buf);
                    let s = shared.clone();
                    let reply =
                        tokio::task::spawn_blocking(move || s.install(ord, &bytes, set_version))
                            .await
                            .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?;
                    wire::send(send, &reply).await?;
                }
            }
            Frame::Close => break,
            other => return Err(protocol("from a publisher", &other)),
        }
    }
    Ok(())
}

async fn partner(
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    while let Some(f) = next_or_shutdown(rd, &mut shutdown).await? {
        match f {
            Frame::PullSnapshot { have_version: _ } => {
                let Some(index) = shared.index.load_full() else {
                    return Err(End::Error(
                        ErrorCode::INTERNAL,
                        "the hub has no snapshot yet".into(),
                    ));
                };
                let set_version = index.header().set_version;
                // One cut per entity and snapshot: pulling again costs no rebuild.
                let cached = lock(&shared.cuts)
                    .get(&ord)
                    .filter(|(v, _)| *v == set_version)
                    .map(|(_, b)| b.clone());
                let bytes = match cached {
                    Some(b) => b,
                    None => {
                        let s = shared.clone();
                        let built = tokio::task::spawn_blocking(move || {
                            route::cut::cut_for(&s.router, ord, &index)
                                .map(|c| c.to_snapshot(s.sign_key.as_ref()))
                        })
                        .await
                        .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?
                        .map_err(|e| {
                            End::Error(ErrorCode::INTERNAL, format!("clearance cut: {e}"))
                        })?;
                        let b = Arc::new(built);
                        lock(&shared.cuts).insert(ord, (set_version, b.clone()));
                        b
                    }
                };
                send_file(send, set_version, &bytes).await?;
            }
            Frame::PullSince {
                set_version,
                identity,
            } => {
                let s = shared.clone();
                let (head, files) =
                    tokio::task::spawn_blocking(move || s.pull_since(ord, set_version, &identity))
                        .await
                        .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?
                        .map_err(|e| End::Error(ErrorCode::INTERNAL, e))?;
                wire::send(
                    send,
                    &Frame::PullAnswer {
                        set_version: head,
                        files: files.len() as u32,
                    },
                )
                .await?;
                for f in files {
                    send_file(send, f.state.set_version, &f.bytes).await?;
                }
            }
            Frame::TelemetryBatch {
                batch_id,
                arrow_ipc,
            } => {
                let s = shared.clone();
                let result = tokio::task::spawn_blocking(move || s.match_batch(ord, &arrow_ipc))
                    .await
                    .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?;
                match result {
                    Ok(hits) => {
                        wire::send(
                            send,
                            &Frame::Hits {
                                batch_id,
                                arrow_ipc: hits,
                            },
                        )
                        .await?
                    }
                    Err(BatchFailure::Bad(m)) => return Err(End::Error(ErrorCode::PROTOCOL, m)),
                    Err(BatchFailure::Internal(m)) => {
                        return Err(End::Error(ErrorCode::INTERNAL, m));
                    }
                }
            }
            Frame::Close => break,
            other => return Err(protocol("from a partner", &other)),
        }
    }
    Ok(())
}

/// Sends one file (a snapshot or a delta of `set_version`) as `PushSnapshot` chunks.
async fn send_file(
    send: &mut quinn::SendStream,
    set_version: u64,
    bytes: &[u8],
) -> Result<(), End> {
    let total_len = bytes.len() as u64;
    let mut position = 0usize;
    loop {
        let end = (position + SNAPSHOT_CHUNK).min(bytes.len());
        wire::send(
            send,
            &Frame::PushSnapshot {
                set_version,
                total_len,
                position: position as u64,
                data: bytes[position..end].to_vec(),
            },
        )
        .await?;
        position = end;
        if position >= bytes.len() {
            return Ok(());
        }
    }
}

/// What the core tells one subscriber's connection task.
#[derive(Default)]
pub(super) struct SessionSignal {
    pub(super) wake: Notify,
    /// A newer session of the same entity took over.
    pub(super) replaced: std::sync::atomic::AtomicBool,
}

async fn subscriber(
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    let from = match next_or_shutdown(rd, &mut shutdown).await? {
        Some(Frame::Subscribe { from }) => from,
        Some(f) => return Err(protocol("from a subscriber", &f)),
        None => return Ok(()),
    };
    let signal = Arc::new(SessionSignal::default());
    let session = {
        let mut hub = lock(&shared.hub);
        let sid = hub
            .connect(shared.router.number(ord), from, now_ms())
            .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?;
        lock(&shared.sessions).insert(sid, signal.clone());
        sid
    };
    shared.pump();
    let id = shared.router.registry().entity(ord).id.as_str();
    if let Some(m) = &shared.metrics {
        m.connected(id, jiff::Timestamp::now());
    }
    let result = deliver(shared, id, session, &signal, send, rd, &mut shutdown).await;
    if let Some(m) = &shared.metrics {
        m.disconnected(id, jiff::Timestamp::now());
    }
    lock(&shared.sessions).remove(&session);
    if !signal.replaced.load(Ordering::Relaxed) {
        let _ = lock(&shared.hub).disconnect(session);
    }
    shared.pump();
    result
}

async fn deliver(
    shared: &Arc<Shared>,
    entity: &str,
    session: SessionId,
    signal: &SessionSignal,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    let internal = |e: core::HubError| End::Error(ErrorCode::INTERNAL, e.to_string());
    let mut frames = Vec::new();
    // Sent and not yet acknowledged, for the metrics: (offset, created_at_ms), ascending.
    let mut unacked: std::collections::VecDeque<(u64, u64)> = Default::default();
    loop {
        if signal.replaced.load(Ordering::Relaxed) {
            return Err(End::Error(
                ErrorCode::REPLACED,
                "another connection subscribed for this entity".into(),
            ));
        }
        // Everything the core has for this session now, in one write.
        {
            let mut hub = lock(&shared.hub);
            let now = now_ms();
            while frames.len() < 256 {
                match hub.poll_transmit(session, now).map_err(internal)? {
                    Some(f) => frames.push(f),
                    None => break,
                }
            }
        }
        if !frames.is_empty() {
            let n = frames
                .iter()
                .filter(|f| matches!(f, Frame::Notification { .. }))
                .count();
            shared
                .stats
                .notifications_sent
                .fetch_add(n as u64, Ordering::Relaxed);
            if shared.metrics.is_some() {
                for f in &frames {
                    if let Frame::Notification {
                        offset,
                        notification,
                    } = f
                        && unacked.back().is_none_or(|&(last, _)| *offset > last)
                    {
                        unacked.push_back((*offset, notification.created_at_ms));
                    }
                }
            }
            wire::send_all(send, &frames).await?;
            let full = frames.len() == 256;
            frames.clear();
            // No timer wake-up here: the ack deadline this send may have started is picked
            // up by the timer loop within TIMER_MAX_WAIT (a wake-up per send made the loop
            // scan every session's deadline ~20,000 times a second with 7,000 subscribers).
            if full {
                continue;
            }
        }
        tokio::select! {
            f = rd.next() => match f? {
                Some(Frame::Ack { offset }) => {
                    let r = lock(&shared.hub).handle_ack(session, offset, now_ms());
                    match r {
                        Ok(()) => {}
                        Err(e @ core::HubError::AckBeyondSent { .. }) => {
                            return Err(End::Error(ErrorCode::PROTOCOL, e.to_string()));
                        }
                        Err(e) => return Err(internal(e)),
                    }
                    shared.pump();
                    if let Some(m) = &shared.metrics {
                        let now = now_ms();
                        let before = unacked.len();
                        while let Some(&(o, created)) = unacked.front()
                            && o <= offset
                        {
                            m.delivered(entity, Duration::from_millis(now.saturating_sub(created)));
                            unacked.pop_front();
                        }
                        m.backlog(entity, unacked.len() as u64);
                        let ts = jiff::Timestamp::now();
                        if unacked.len() < before {
                            m.last_delivery(entity, ts);
                        }
                        m.seen(entity, ts);
                    }
                }
                Some(Frame::DeliveryReport { targets }) => {
                    if let Some(m) = &shared.metrics {
                        m.delivery_report(entity, targets, jiff::Timestamp::now());
                    }
                }
                Some(Frame::Close) | None => return Ok(()),
                Some(f) => return Err(protocol("from a subscriber", &f)),
            },
            _ = signal.wake.notified() => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
