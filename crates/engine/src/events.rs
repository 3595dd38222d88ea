//! Events: what happened to containers, images and volumes, recorded in the database by
//! whichever berth process did it (CLI or monitor), so `events` sees them all, live or
//! after the fact. A bounded window is kept (the newest 10,000).

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use crate::error::Result;
use crate::Engine;

const KEEP: i64 = 10_000;
/// Every how many events the ones past `KEEP` are deleted.
const TRIM_EVERY: i64 = 100;

/// One event, shaped like Docker's event message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// Docker's legacy fields: status and id for container and image events, from
    /// (the image) for container events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip)]
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl Engine {
    /// Records an event; failures to record never fail the operation that caused it.
    pub fn emit(&self, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let attrs = serde_json::to_string(&attributes).unwrap_or_else(|_| "{}".into());
        let inserted = self.db.execute(
            "INSERT INTO events (time_nano, type, action, actor, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_nanos(), kind, action, id, attrs],
        );
        // The oldest go in batches: a delete on every event would write as many pages as
        // the insert does (a short `run --rm` records four events).
        if inserted.is_ok() && self.db.last_insert_rowid() % TRIM_EVERY == 0 {
            let _ = self.db.execute(
                "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?1",
                [KEEP],
            );
        }
    }

    /// A container event, with Docker's attributes (image, name, labels, extras).
    pub fn emit_container(
        &self,
        rec: &crate::model::ContainerRecord,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut a: BTreeMap<String, String> = rec.config.labels.clone();
        a.insert("image".into(), rec.config.image.clone());
        a.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            a.insert((*k).to_string(), v.clone());
        }
        self.emit("container", action, &rec.id, a);
    }

    /// Events after `after_seq`, from `since` (ns) until `until` (ns), oldest first.
    pub fn events_after(
        &self,
        after_seq: i64,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<Vec<Event>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT seq, time_nano, type, action, actor, attributes FROM events WHERE seq > ?1 AND time_nano >= ?2 AND time_nano <= ?3 ORDER BY seq",
        )?;
        let rows = stmt.query_map(
            params![after_seq, since.unwrap_or(0), until.unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, t, kind, action, actor, attrs) = row?;
            let attributes: BTreeMap<String, String> =
                serde_json::from_str(&attrs).unwrap_or_default();
            // Docker fills the legacy fields for container and image events.
            let container = kind == "container";
            let legacy = container || kind == "image";
            out.push(Event {
                status: legacy.then(|| action.clone()),
                id: legacy.then(|| actor.clone()),
                from: if container {
                    attributes.get("image").cloned()
                } else {
                    None
                },
                kind,
                action,
                actor: Actor {
                    id: actor,
                    attributes,
                },
                scope: "local".into(),
                time: t / 1_000_000_000,
                time_nano: t,
                seq,
            });
        }
        Ok(out)
    }

    /// The exit code in container `id`'s last `die` event: what is left of how an
    /// auto-removed container ended.
    pub fn last_exit_code(&self, id: &str) -> Option<i32> {
        let attrs: String = self
            .db
            .query_row(
                "SELECT attributes FROM events WHERE type = 'container' AND action = 'die' AND actor = ?1 ORDER BY seq DESC LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .ok()?;
        let a: BTreeMap<String, String> = serde_json::from_str(&attrs).ok()?;
        a.get("exitCode")?.parse().ok()
    }

    /// The newest event's sequence number (0 when there is none).
    pub fn last_event_seq(&self) -> Result<i64> {
        Ok(self
            .db
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }
}

/// Does `e` pass Docker's event filters (`type=`, `event=`, `container=`, `image=`,
/// `label=`, `volume=`)? Filters on the same key are ORed, different keys ANDed.
pub fn matches(e: &Event, filters: &[(String, String)]) -> bool {
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    keys.iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match *key {
                "type" => e.kind == *v,
                "event" | "status" => e.action == *v || e.action.starts_with(&format!("{v}:")),
                "container" => {
                    e.kind == "container"
                        && (e.actor.id.starts_with(v.as_str())
                            || e.actor.attributes.get("name") == Some(v))
                }
                "image" => {
                    e.actor.attributes.get("image") == Some(v)
                        || (e.kind == "image"
                            && (e.actor.id == *v || e.actor.attributes.get("name") == Some(v)))
                }
                "volume" => e.kind == "volume" && e.actor.id == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.actor.attributes.get(lk).map(|x| x == lv).unwrap_or(false),
                    None => e.actor.attributes.contains_key(v.as_str()),
                },
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_events_go_in_batches_past_the_window() {
        let d = tempfile::tempdir().unwrap();
        let e = Engine::open(crate::EngineOptions::new(
            d.path().join("r"),
            d.path().join("x"),
        ))
        .unwrap();
        let count = |e: &Engine| -> i64 {
            e.db.query_row("SELECT COUNT(*), MIN(seq) FROM events", [], |r| r.get(0))
                .unwrap()
        };
        e.db.execute_batch("BEGIN").unwrap();
        for i in 0..KEEP + TRIM_EVERY - 1 {
            e.emit("container", "create", &format!("c{i}"), BTreeMap::new());
        }
        e.db.execute_batch("COMMIT").unwrap();
        // Not trimmed before the batch is full…
        assert_eq!(count(&e), KEEP + TRIM_EVERY - 1);
        e.emit("container", "create", "last", BTreeMap::new());
        // …then down to the window, the newest kept.
        assert_eq!(count(&e), KEEP);
        let newest = e.events_after(0, None, None).unwrap();
        assert_eq!(newest.last().map(|ev| ev.actor.id.as_str()), Some("last"));
    }
}
