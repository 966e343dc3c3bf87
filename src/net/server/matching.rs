//! Telemetry batches: match, route, log durably, answer — and the answers kept for a partner
//! that sends a batch again after a broken connection.

use super::*;

/// The answers (encoded hits) to each partner's most recent batches, by batch digest: a
/// partner whose connection broke sends its unanswered batches again, and those the hub had
/// made durable are answered from here. Bounded per partner by count and bytes.
#[derive(Default)]
pub(super) struct RecentAnswers {
    by_partner: HashMap<EntityOrd, std::collections::VecDeque<Answer>>,
}

/// A batch digest (mixed with the snapshot version) and the answer given to it.
type Answer = (u128, Arc<Vec<u8>>);

impl RecentAnswers {
    /// Batches remembered per partner: twice what a client may have unanswered.
    const BATCHES: usize = 2 * crate::net::client::STREAM_WINDOW;
    /// Bytes of answers remembered per partner.
    const BYTES: usize = 8 << 20;

    fn get(&self, partner: EntityOrd, digest: u128) -> Option<Vec<u8>> {
        self.by_partner
            .get(&partner)?
            .iter()
            .find(|(d, _)| *d == digest)
            .map(|(_, a)| a.as_ref().clone())
    }

    fn put(&mut self, partner: EntityOrd, digest: u128, answer: &[u8]) {
        if answer.len() > Self::BYTES {
            return;
        }
        let q = self.by_partner.entry(partner).or_default();
        q.push_back((digest, Arc::new(answer.to_vec())));
        let mut bytes: usize = q.iter().map(|(_, a)| a.len()).sum();
        while q.len() > Self::BATCHES || bytes > Self::BYTES {
            if let Some((_, a)) = q.pop_front() {
                bytes -= a.len();
            }
        }
    }
}

pub(super) enum BatchFailure {
    Bad(String),
    Internal(String),
}

/// The metric label for a partner's input: its log type when the name says one we know
/// (`conn.log` → `conn`), else `other`. The name is the partner's to choose, so the label is
/// from a fixed set: a partner cannot grow the number of metric series.
pub(super) fn telemetry_kind(input: &str) -> &'static str {
    const KNOWN: [&str; 18] = [
        "conn",
        "dns",
        "http",
        "ssl",
        "x509",
        "files",
        "smtp",
        "notice",
        "weird",
        "zeek",
        "eve",
        "suricata",
        "ecs",
        "ocsf",
        "proxy",
        "netflow",
        "firewall",
        "telemetry",
    ];
    let name = input.rsplit(['/', '\\']).next().unwrap_or(input);
    let first = name.split(['-', '_', '.']).next().unwrap_or("");
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("other")
}

impl Shared {
    /// Logs `logged` durably (with the audit lines `side`) and hands each notification to
    /// its entity's session. The wait for the disk (the file store's journal sync) and, on a
    /// cluster, the whole append run outside the hub's lock: a slow disk or store (a leader
    /// election) then holds up this batch only, not every session.
    pub(super) fn publish(
        &self,
        logged: &[Notification],
        side: Option<(u64, &[u8])>,
    ) -> Result<(), core::HubError> {
        #[cfg(feature = "cluster")]
        if let Some(store) = &self.cluster_store {
            use crate::hub::Store as _;
            let encoded = core::EncodedBatch::encode(logged, store.max_record_bytes())?;
            let side = side.map(|(offset, bytes)| core::store::Side { offset, bytes });
            let appended = store.append_shared(&encoded.own_groups(), now_ms(), side);
            return lock(&self.hub)
                .handle_appended(logged, &encoded, appended, now_ms())
                .map(|_| ());
        }
        // The file store's fdatasync runs without the hub's lock, so that every session goes
        // on delivering and taking acks meanwhile; the appends themselves go one at a time.
        let _one = lock(&self.appending);
        let mut pending = lock(&self.hub).start_publish(logged, now_ms(), side)?;
        pending.sync();
        lock(&self.hub)
            .finish_publish(logged, pending, now_ms())
            .map(|_| ())
    }

    /// Matches one telemetry batch of `partner`, routes and logs the notifications (durably),
    /// and returns the hits the partner may see, as Arrow IPC.
    pub(super) fn match_batch(
        self: &Arc<Self>,
        partner: EntityOrd,
        ipc: &[u8],
    ) -> Result<Vec<u8>, BatchFailure> {
        // A batch sent again after a lost connection, whose notifications are durable
        // already: the same answer, nothing matched or logged twice.
        // Under another snapshot the batch is matched again: its answer may differ.
        let digest = route::batch::batch_digest(ipc);
        let version = self
            .index
            .load()
            .as_ref()
            .map_or(0, |i| i.header().set_version);
        let key = digest ^ u128::from(version) << 64;
        if let Some(answer) = lock(&self.answered).get(partner, key) {
            return Ok(answer);
        }
        let answer = self.match_new_batch(partner, ipc, digest)?;
        lock(&self.answered).put(partner, key, &answer);
        Ok(answer)
    }

    fn match_new_batch(
        self: &Arc<Self>,
        partner: EntityOrd,
        ipc: &[u8],
        digest: u128,
    ) -> Result<Vec<u8>, BatchFailure> {
        let t = batch::decode_telemetry(ipc, self.limits.max_batch_bytes)
            .map_err(|e| BatchFailure::Bad(e.to_string()))?;
        let Some(index) = self.index.load_full() else {
            return Err(BatchFailure::Internal("the hub has no snapshot yet".into()));
        };
        let now = jiff::Timestamp::now();
        let matcher = Matcher::new(&index, &t.fields, now.as_second());
        let mut hits = Vec::new();
        matcher.match_record_batch(&t.batch, t.first_row, &mut hits);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .rows
            .fetch_add(t.batch.num_rows() as u64, Ordering::Relaxed);
        self.stats
            .hits
            .fetch_add(hits.len() as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            let partner_id = self.router.registry().entity(partner).id.as_str();
            // A partner that streams is reachable: it hears its hits on this connection.
            m.seen(partner_id, now);
            m.rows(
                partner_id,
                telemetry_kind(&t.input),
                t.batch.num_rows() as u64,
                now,
            );
            let mut by_kind: std::collections::BTreeMap<crate::indicator::Kind, u64> =
                Default::default();
            for h in &hits {
                *by_kind.entry(index.meta().kind(h.ord)).or_default() += 1;
            }
            for (k, n) in by_kind {
                m.hits(partner_id, k, n, now);
            }
        }
        if let Some(tx) = &self.retro_tx {
            let keep = super::retro::ToKeep {
                partner: self.router.registry().entity(partner).id.clone(),
                batch: t.batch.clone(),
                fields: t.fields.clone(),
                digest,
                received_ms: now_ms(),
            };
            // Kept in the background; a full queue holds this batch up, never drops it.
            if lock(tx).send(keep).is_err() {
                tracing::error!("retro-hunt store: its writer stopped; batch not kept");
            }
        }
        let (_, back) = self.route_and_log(partner, &index, &t, &hits, digest, false, now)?;
        batch::encode_hits(&back).map_err(|e| BatchFailure::Internal(e.to_string()))
    }

    /// Routes the `hits` of one batch `t` of `partner`, matched on `index`, logs the
    /// notifications durably (with their audit lines), and returns how many were logged and
    /// the hit lines the partner may see (its daily quota applied). A retro-hunt's hits are
    /// marked `retro`; their lines for the partner also become notifications to it (there is
    /// no connection to answer on), within the same quota.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn route_and_log(
        self: &Arc<Self>,
        partner: EntityOrd,
        index: &CompiledIndex,
        t: &batch::Telemetry,
        hits: &[crate::matcher::Hit],
        digest: u128,
        retro: bool,
        now: jiff::Timestamp,
    ) -> Result<(u64, Vec<batch::HitLine>), BatchFailure> {
        let reg = self.router.registry();
        let matched = MatchedBatch {
            index,
            fields: &t.fields,
            batch: &t.batch,
            first_row: t.first_row,
            input: &t.input,
            hits,
            digest,
            retro,
        };
        let parties = BatchParties {
            partner,
            publisher: *lock(&self.publisher),
        };
        let first_hit = self
            .next_hit
            .fetch_add(hits.len() as u64, Ordering::Relaxed);
        let routed = route_batch(&self.router, &matched, parties, first_hit, now);
        // The record of a disclosure is durable before the disclosure is: the lines written
        // here travel in the journal append of the batch's notifications (below), which the
        // hub replays into the audit log after a crash.
        let audit_at = if routed.audit.is_empty() {
            None
        } else {
            let mut f = lock(&self.audit);
            let at = std::io::Seek::seek(&mut *f, std::io::SeekFrom::End(0))
                .and_then(|at| f.write_all(&routed.audit).map(|()| at))
                .map_err(|e| BatchFailure::Internal(format!("audit log: {e}")))?;
            Some(at)
        };
        lock(&self.sightings).merge(&routed.sightings);
        if let Some(m) = &self.metrics
            && !hits.is_empty()
        {
            m.sightings(&reg.entity(partner).id, hits.len() as u64);
        }
        // The partner's daily quota of distinct indicators it may learn of.
        let partner_id = &reg.entity(partner).id;
        let quota = lock(&self.quota).filter(partner, partner_id, routed.back_to_partner, now);
        if quota.first_refusal {
            let msg = format!(
                "partner {partner_id} is over its daily quota of {} distinct indicators; its further hits are withheld",
                self.limits.max_indicators_per_partner_day
            );
            tracing::warn!("{msg}");
            if let Some(m) = &self.metrics {
                m.error(now, &msg);
            }
        }
        if !quota.audit.is_empty() {
            lock(&self.audit)
                .write_all(&quota.audit)
                .map_err(|e| BatchFailure::Internal(format!("audit log: {e}")))?;
        }
        let back = quota.admitted;
        let mut notifications = routed.notifications;
        if retro {
            // What the quota withheld from the partner it does not hear of by notification
            // either.
            let admitted: std::collections::HashSet<&str> =
                back.iter().map(|l| l.indicator_id.as_str()).collect();
            notifications.retain(|n| {
                n.recipient != partner || {
                    let id: Option<String> =
                        serde_json::from_slice::<serde_json::Value>(&n.notification.payload)
                            .ok()
                            .and_then(|v| v["indicator_id"].as_str().map(str::to_string));
                    id.is_some_and(|id| admitted.contains(id.as_str()))
                }
            });
        }
        let (decisions_logged, logged): (Vec<EntityOrd>, Vec<Notification>) = notifications
            .into_iter()
            .map(|n| (n.recipient, n.notification))
            .unzip();
        if !logged.is_empty() {
            // Durable (one fsync per entity) before the partner hears the batch is done.
            let side = audit_at.map(|at| (at, routed.audit.as_slice()));
            self.publish(&logged, side)
                .map_err(|e| BatchFailure::Internal(format!("notification log: {e}")))?;
            self.stats
                .notifications_logged
                .fetch_add(logged.len() as u64, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                let mut per_entity: HashMap<EntityOrd, u64> = HashMap::new();
                for d in decisions_logged.iter() {
                    *per_entity.entry(*d).or_default() += 1;
                }
                for (ord, n) in per_entity {
                    m.queued(&reg.entity(ord).id, n);
                }
            }
            self.background();
            self.pump();
            self.timer.notify_one();
        }
        Ok((logged.len() as u64, back))
    }
}
