//! Parsing `SHOW REPLICAS`: the 2.15+ layout (`data_info` map) and the older one (flat columns).

use super::{BoltValue, QueryResult};

/// A replica's state as its MAIN reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplicaStatus {
    /// In sync.
    Ready,
    /// A transaction is in flight (mostly ASYNC); in sync otherwise.
    Replicating,
    /// Catching up from durability files.
    Recovery,
    /// Unreachable, behind or failed; the MAIN retries.
    Invalid,
    /// Its history conflicts with the MAIN's: it holds data the MAIN does not have.
    Diverged,
    /// A state this operator does not know.
    Other(String),
}

impl ReplicaStatus {
    fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "ready" => ReplicaStatus::Ready,
            "replicating" => ReplicaStatus::Replicating,
            "recovery" => ReplicaStatus::Recovery,
            "invalid" | "maybe_behind" => ReplicaStatus::Invalid,
            "diverged" | "diverged_from_main" => ReplicaStatus::Diverged,
            other => ReplicaStatus::Other(other.to_owned()),
        }
    }

    /// Whether clients may read from a replica in this state.
    pub fn is_healthy(&self) -> bool {
        matches!(self, ReplicaStatus::Ready | ReplicaStatus::Replicating)
    }

    /// The lower-case word Memgraph uses.
    pub fn as_str(&self) -> &str {
        match self {
            ReplicaStatus::Ready => "ready",
            ReplicaStatus::Replicating => "replicating",
            ReplicaStatus::Recovery => "recovery",
            ReplicaStatus::Invalid => "invalid",
            ReplicaStatus::Diverged => "diverged",
            ReplicaStatus::Other(s) => s,
        }
    }
}

/// Replication progress of the default database on one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaData {
    /// The replica's last durable commit timestamp as the MAIN knows it.
    pub ts: i64,
    /// Replica ts minus MAIN ts: 0 in sync, negative when behind.
    pub behind: i64,
    /// The replica's state.
    pub status: ReplicaStatus,
}

/// One row of `SHOW REPLICAS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// Name as registered.
    pub name: String,
    /// `host:port` as registered.
    pub socket_address: String,
    /// `sync`, `async` or `strict_sync`.
    pub sync_mode: String,
    /// Progress of the default database; `None` when `data_info` is `{}`, which is what a
    /// half-failed registration leaves behind.
    pub data: Option<ReplicaData>,
}

/// Parse `SHOW REPLICAS` in either layout. Rows that cannot be understood are an error naming
/// the row, never silently skipped.
pub fn parse_show_replicas(result: &QueryResult) -> Result<Vec<ReplicaRow>, String> {
    let mut rows = Vec::with_capacity(result.rows.len());
    let modern = result.columns.iter().any(|c| c == "data_info");
    for i in 0..result.rows.len() {
        let text = |column: &str| result.get(i, column).and_then(BoltValue::as_str).map(str::to_owned);
        let name = text("name").ok_or_else(|| format!("row {i} has no name"))?;
        let socket_address = text("socket_address").ok_or_else(|| format!("replica {name} has no socket_address"))?;
        let sync_mode =
            text("sync_mode").ok_or_else(|| format!("replica {name} has no sync_mode"))?.to_ascii_lowercase();
        let data = if modern {
            parse_data_info(result.get(i, "data_info")).map_err(|e| format!("replica {name}: {e}"))?
        } else {
            let int = |column: &str| result.get(i, column).and_then(BoltValue::as_int);
            match (int("current_timestamp_of_replica"), int("number_of_timestamp_behind_master"), text("state")) {
                (Some(ts), Some(behind), Some(state)) => {
                    // Old versions report "behind" as a positive count.
                    Some(ReplicaData { ts, behind: -behind.abs(), status: ReplicaStatus::parse(&state) })
                }
                _ => return Err(format!("replica {name}: missing timestamp or state columns")),
            }
        };
        rows.push(ReplicaRow { name, socket_address, sync_mode, data });
    }
    Ok(rows)
}

fn parse_data_info(value: Option<&BoltValue>) -> Result<Option<ReplicaData>, String> {
    let map = match value {
        None | Some(BoltValue::Null) => return Ok(None),
        Some(BoltValue::Map(map)) => map,
        Some(other) => return Err(format!("data_info is not a map: {other:?}")),
    };
    // Without a licence only the default database is listed; with one, every database is.
    let Some(db) = map.get("memgraph").or_else(|| map.values().next()) else { return Ok(None) };
    let db = db.as_map().ok_or("data_info.memgraph is not a map")?;
    let ts = db.get("ts").and_then(BoltValue::as_int).ok_or("data_info has no ts")?;
    let behind = db.get("behind").and_then(BoltValue::as_int).unwrap_or(0);
    let status = db.get("status").and_then(BoltValue::as_str).ok_or("data_info has no status")?;
    Ok(Some(ReplicaData { ts, behind, status: ReplicaStatus::parse(status) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(v: &str) -> BoltValue {
        BoltValue::String(v.to_owned())
    }

    fn map(pairs: &[(&str, BoltValue)]) -> BoltValue {
        BoltValue::Map(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    fn modern(rows: Vec<Vec<BoltValue>>) -> QueryResult {
        QueryResult {
            columns: ["name", "socket_address", "sync_mode", "system_info", "data_info"].map(String::from).to_vec(),
            rows,
        }
    }

    #[test]
    fn parses_the_2_15_layout() {
        let result = modern(vec![
            vec![
                s("read_0"),
                s("c-read-0-0.c-read-0.ns.svc.cluster.local:10000"),
                s("async"),
                BoltValue::Null,
                map(&[(
                    "memgraph",
                    map(&[("ts", BoltValue::Int(4)), ("behind", BoltValue::Int(0)), ("status", s("ready"))]),
                )]),
            ],
            vec![
                s("read_1"),
                s("x:10000"),
                s("sync"),
                BoltValue::Null,
                map(&[(
                    "memgraph",
                    map(&[("ts", BoltValue::Int(2)), ("behind", BoltValue::Int(-3)), ("status", s("invalid"))]),
                )]),
            ],
            // A half-failed registration.
            vec![s("read_2"), s("y:10000"), s("strict_sync"), BoltValue::Null, BoltValue::Map(BTreeMap::new())],
        ]);
        let rows = parse_show_replicas(&result).expect("parse");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].data, Some(ReplicaData { ts: 4, behind: 0, status: ReplicaStatus::Ready }));
        assert_eq!(rows[1].data, Some(ReplicaData { ts: 2, behind: -3, status: ReplicaStatus::Invalid }));
        assert_eq!(rows[1].sync_mode, "sync");
        assert_eq!(rows[2].data, None);
        assert_eq!(rows[2].sync_mode, "strict_sync");
    }

    #[test]
    fn parses_the_pre_2_15_layout() {
        let result = QueryResult {
            columns: [
                "name",
                "socket_address",
                "sync_mode",
                "current_timestamp_of_replica",
                "number_of_timestamp_behind_master",
                "state",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![vec![
                s("read_0"),
                s("a:10000"),
                s("async"),
                BoltValue::Int(7),
                BoltValue::Int(2),
                s("recovery"),
            ]],
        };
        let rows = parse_show_replicas(&result).expect("parse");
        assert_eq!(rows[0].data, Some(ReplicaData { ts: 7, behind: -2, status: ReplicaStatus::Recovery }));
    }

    #[test]
    fn every_state_word_is_understood() {
        for (word, status, healthy) in [
            ("ready", ReplicaStatus::Ready, true),
            ("replicating", ReplicaStatus::Replicating, true),
            ("recovery", ReplicaStatus::Recovery, false),
            ("invalid", ReplicaStatus::Invalid, false),
            ("diverged", ReplicaStatus::Diverged, false),
            ("READY", ReplicaStatus::Ready, true),
            ("exploded", ReplicaStatus::Other("exploded".into()), false),
        ] {
            let parsed = ReplicaStatus::parse(word);
            assert_eq!(parsed, status, "{word}");
            assert_eq!(parsed.is_healthy(), healthy, "{word}");
        }
    }

    #[test]
    fn malformed_rows_are_errors_not_skipped() {
        let bad = [
            modern(vec![vec![BoltValue::Null, s("a"), s("async"), BoltValue::Null, BoltValue::Null]]),
            modern(vec![vec![s("read_0"), s("a"), s("async"), BoltValue::Null, s("ready")]]),
            modern(vec![vec![
                s("read_0"),
                s("a"),
                s("async"),
                BoltValue::Null,
                map(&[("memgraph", map(&[("status", s("ready"))]))]),
            ]]),
        ];
        for (i, result) in bad.iter().enumerate() {
            assert!(parse_show_replicas(result).is_err(), "case {i}");
        }
        assert_eq!(parse_show_replicas(&modern(vec![])), Ok(vec![]));
    }
}
