//! Command-line configuration with Memgraph's flag names, defaults and gflags-style parsing.
//!
//! Flags that real Memgraph does not have are prefixed `--fake-`:
//! - `--memgraph-version=3.12` — which release to emulate (2.21 … 3.12).
//! - `--fake-user=U --fake-password=P` — create one user, so Bolt logins are checked (like the Docker
//!   image's `MEMGRAPH_USER`/`MEMGRAPH_PASSWORD`). Without it any credentials are accepted.
//! - `--fake-defaults=packaged|compiled` — `packaged` (default) uses the Docker image's
//!   `/etc/memgraph/memgraph.conf` values (WAL on, snapshots every 300 s, snapshot on exit,
//!   data directory `/var/lib/memgraph`); `compiled` uses the binary's built-in defaults.
//! - `--fake-replica-check-frequency-ms=N` — replica heartbeat period in ms (overrides the `-sec` flag;
//!   lets tests run fast). 0 disables checks, like a value below 1 s does in Memgraph.
//! - `--fake-rpc-timeout-ms=N` — one timeout for every replication RPC and connect (overrides the
//!   version's 10 s / 30 s / 60 s table).
//! - `--fake-snapshot-micros-per-node=N` — writing a snapshot (manual, periodic, on exit) takes N µs of
//!   tokio (simulated) time per node before the file is complete (0, the default, is instant).
//! - `--fake-recovery-micros-per-node=N` — recovering the data directory at start-up takes N µs per
//!   recovered node before the Bolt port is bound (0, the default, is instant).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::version::{MgVersion, NEWEST};

/// The program's own version (printed by `--version`).
pub const PROGRAM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Memgraph's Bolt server name (`--bolt-server-name-for-init` default).
pub const DEFAULT_SERVER_NAME: &str = "Neo4j/v5.11.0 compatible graph database server - Memgraph";

/// Effective configuration of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--bolt-port` (7687).
    pub bolt_port: u16,
    /// `--bolt-address` (0.0.0.0); informational, binding goes through the network abstraction.
    pub bolt_address: String,
    /// `--bolt-server-name-for-init`.
    pub server_name: String,
    /// `--data-directory`.
    pub data_directory: String,
    /// `--log-level` (TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL).
    pub log_level: String,
    /// `--log-file`.
    pub log_file: Option<String>,
    /// `--also-log-to-stderr`.
    pub also_log_to_stderr: bool,
    /// `--memory-limit` in MiB (0 = default share of RAM); recorded, not enforced.
    pub memory_limit_mib: u64,
    /// `--storage-wal-enabled`.
    pub wal_enabled: bool,
    /// `--storage-wal-file-flush-every-n-tx` (1 … 1,000,000).
    pub wal_flush_every_n_tx: u64,
    /// `--storage-wal-file-size-kib`.
    pub wal_file_size_kib: u64,
    /// `--storage-snapshot-interval-sec` (0 disables periodic snapshots), or the seconds form of
    /// `--storage-snapshot-interval`, which wins when both are set.
    pub snapshot_interval_sec: u64,
    /// `--storage-snapshot-retention-count` (1 … 1,000,000).
    pub snapshot_retention_count: u64,
    /// `--storage-snapshot-on-exit`.
    pub snapshot_on_exit: bool,
    /// `--storage-enable-backup-dir`.
    pub enable_backup_dir: bool,
    /// `--replication-restore-state-on-startup`.
    pub restore_replication_state: bool,
    /// `--data-recovery-on-startup`.
    pub data_recovery_on_startup: bool,
    /// Replica check period: `--replication-replica-check-frequency-sec` or the `-ms` knob.
    /// Zero disables the frequent check.
    pub replica_check_frequency: Duration,
    /// `--management-port` (non-zero = coordinator-managed data instance).
    pub management_port: u16,
    /// `--memgraph-version`.
    pub memgraph_version: MgVersion,
    /// `--fake-user` / `--fake-password`.
    pub auth: Option<(String, String)>,
    /// `--fake-rpc-timeout-ms`.
    pub rpc_timeout_override: Option<Duration>,
    /// `--fake-snapshot-micros-per-node`: how long writing a snapshot takes per node, in µs.
    pub snapshot_micros_per_node: u64,
    /// `--fake-recovery-micros-per-node`: how long start-up recovery takes per recovered node, in µs.
    pub recovery_micros_per_node: u64,
}

impl Default for Config {
    fn default() -> Self {
        // Parsing no arguments cannot fail: every default is valid.
        match Config::parse_args(Vec::<String>::new()) {
            Ok(c) => c,
            Err(e) => unreachable!("defaults are valid: {e}"),
        }
    }
}

/// Why the command line was rejected (or asked for something other than running).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A flag neither Memgraph nor the fake knows (gflags exits on these).
    #[error("ERROR: unknown command line flag '{0}'")]
    UnknownFlag(String),
    /// A flag without its value.
    #[error("ERROR: flag '{0}' is missing its argument")]
    MissingValue(String),
    /// A value that does not parse or is out of range.
    #[error("ERROR: illegal value '{value}' specified for flag '{flag}'{detail}")]
    BadValue {
        /// Flag name.
        flag: String,
        /// Offending value.
        value: String,
        /// Extra explanation (starts with a separator or is empty).
        detail: String,
    },
    /// A positional argument.
    #[error("ERROR: unexpected argument '{0}'")]
    Positional(String),
    /// `--version` was given: print [`PROGRAM_VERSION`] and exit.
    #[error("version requested")]
    VersionRequested,
    /// `--help` was given.
    #[error("help requested")]
    HelpRequested,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Value,
}

/// Every accepted flag and whether it is boolean.
const FLAGS: &[(&str, Kind)] = &[
    ("bolt-port", Kind::Value),
    ("bolt-address", Kind::Value),
    ("bolt-server-name-for-init", Kind::Value),
    ("data-directory", Kind::Value),
    ("log-level", Kind::Value),
    ("log-file", Kind::Value),
    ("also-log-to-stderr", Kind::Bool),
    ("memory-limit", Kind::Value),
    ("storage-wal-enabled", Kind::Bool),
    ("storage-wal-file-flush-every-n-tx", Kind::Value),
    ("storage-wal-file-size-kib", Kind::Value),
    ("storage-snapshot-interval-sec", Kind::Value),
    ("storage-snapshot-interval", Kind::Value),
    ("storage-snapshot-retention-count", Kind::Value),
    ("storage-snapshot-on-exit", Kind::Bool),
    ("storage-enable-backup-dir", Kind::Bool),
    ("replication-restore-state-on-startup", Kind::Bool),
    ("data-recovery-on-startup", Kind::Bool),
    ("replication-replica-check-frequency-sec", Kind::Value),
    ("management-port", Kind::Value),
    ("telemetry-enabled", Kind::Bool),
    ("memgraph-version", Kind::Value),
    ("fake-user", Kind::Value),
    ("fake-password", Kind::Value),
    ("fake-defaults", Kind::Value),
    ("fake-replica-check-frequency-ms", Kind::Value),
    ("fake-rpc-timeout-ms", Kind::Value),
    ("fake-snapshot-micros-per-node", Kind::Value),
    ("fake-recovery-micros-per-node", Kind::Value),
];

const LOG_LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

fn bad(flag: &str, value: &str, detail: &str) -> ConfigError {
    ConfigError::BadValue {
        flag: flag.into(),
        value: value.into(),
        detail: if detail.is_empty() { String::new() } else { format!(": {detail}") },
    }
}

fn parse_bool(flag: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "t" | "y" => Ok(true),
        "false" | "0" | "no" | "f" | "n" => Ok(false),
        _ => Err(bad(flag, v, "")),
    }
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| bad(flag, v, ""))
}

fn in_range(flag: &str, v: &str, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    let n: u64 = parse_num(flag, v)?;
    if (lo..=hi).contains(&n) { Ok(n) } else { Err(bad(flag, v, &format!("expected a value between {lo} and {hi}"))) }
}

/// Splits the command line into `flag -> value` (later occurrences win, as in gflags).
fn collect_flags<I, S>(args: I) -> Result<BTreeMap<String, String>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out = BTreeMap::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(ConfigError::Positional(arg));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let name = name.replace('_', "-");
        match name.as_str() {
            "version" => return Err(ConfigError::VersionRequested),
            "help" | "h" => return Err(ConfigError::HelpRequested),
            _ => {}
        }
        let known = FLAGS.iter().find(|(n, _)| *n == name);
        let (name, kind, value) = match (known, inline) {
            (Some((n, k)), v) => (n.to_string(), *k, v),
            // gflags' `--noflag` form for booleans.
            (None, None) => {
                match name.strip_prefix("no").and_then(|n| FLAGS.iter().find(|(f, k)| *f == n && *k == Kind::Bool)) {
                    Some((n, _)) => (n.to_string(), Kind::Bool, Some("false".into())),
                    None => return Err(ConfigError::UnknownFlag(name)),
                }
            }
            (None, Some(_)) => return Err(ConfigError::UnknownFlag(name)),
        };
        let value = match (kind, value) {
            (_, Some(v)) => v,
            (Kind::Bool, None) => "true".into(),
            (Kind::Value, None) => it.next().ok_or_else(|| ConfigError::MissingValue(name.clone()))?,
        };
        out.insert(name, value);
    }
    Ok(out)
}

impl Config {
    /// Parses command-line arguments (without the program name), accepting `--flag=value`,
    /// `--flag value`, `--bool-flag`, `--bool-flag=true|false` and `--nobool-flag`.
    pub fn parse_args<I, S>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let f = collect_flags(args)?;
        let get = |k: &str| f.get(k).map(String::as_str);
        let version = match get("memgraph-version") {
            Some(v) => {
                MgVersion::parse(v).ok_or_else(|| bad("memgraph-version", v, "supported versions are 2.21 to 3.12"))?
            }
            None => NEWEST,
        };
        let packaged = match get("fake-defaults").unwrap_or("packaged") {
            "packaged" => true,
            "compiled" => false,
            other => return Err(bad("fake-defaults", other, "expected packaged or compiled")),
        };
        let boolean = |k: &str, default: bool| get(k).map_or(Ok(default), |v| parse_bool(k, v));

        let mut snapshot_interval_sec = match get("storage-snapshot-interval-sec") {
            Some(v) => in_range("storage-snapshot-interval-sec", v, 0, 7 * 24 * 3600)?,
            None if packaged => 300,
            None => version.default_snapshot_interval_sec(),
        };
        if let Some(v) = get("storage-snapshot-interval") {
            // Seconds win over `-sec`; cron schedules are Enterprise-only and not emulated.
            if !v.is_empty() {
                snapshot_interval_sec = in_range("storage-snapshot-interval", v, 0, 7 * 24 * 3600)?;
            }
        }
        let log_level = get("log-level").unwrap_or("WARNING").to_ascii_uppercase();
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(bad("log-level", &log_level, "expected one of TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL"));
        }
        let replica_check_frequency = match get("fake-replica-check-frequency-ms") {
            Some(v) => Duration::from_millis(parse_num("fake-replica-check-frequency-ms", v)?),
            None => Duration::from_secs(
                get("replication-replica-check-frequency-sec")
                    .map_or(Ok(1), |v| parse_num("replication-replica-check-frequency-sec", v))?,
            ),
        };
        let auth = match (get("fake-user"), get("fake-password")) {
            (Some(u), p) => Some((u.to_string(), p.unwrap_or_default().to_string())),
            (None, Some(_)) => {
                return Err(bad("fake-password", "<hidden>", "--fake-user is required with it"));
            }
            (None, None) => None,
        };
        Ok(Config {
            bolt_port: get("bolt-port").map_or(Ok(7687), |v| parse_num("bolt-port", v))?,
            bolt_address: get("bolt-address").unwrap_or("0.0.0.0").into(),
            server_name: get("bolt-server-name-for-init").unwrap_or(DEFAULT_SERVER_NAME).into(),
            data_directory: get("data-directory")
                .unwrap_or(if packaged { "/var/lib/memgraph" } else { "mg_data" })
                .into(),
            log_level,
            log_file: get("log-file").map(str::to_owned),
            also_log_to_stderr: boolean("also-log-to-stderr", false)?,
            memory_limit_mib: get("memory-limit").map_or(Ok(0), |v| parse_num("memory-limit", v))?,
            wal_enabled: boolean("storage-wal-enabled", packaged)?,
            wal_flush_every_n_tx: get("storage-wal-file-flush-every-n-tx")
                .map_or(Ok(100_000), |v| in_range("storage-wal-file-flush-every-n-tx", v, 1, 1_000_000))?,
            wal_file_size_kib: get("storage-wal-file-size-kib")
                .map_or(Ok(20480), |v| in_range("storage-wal-file-size-kib", v, 1, 1 << 30))?,
            snapshot_interval_sec,
            snapshot_retention_count: get("storage-snapshot-retention-count")
                .map_or(Ok(3), |v| in_range("storage-snapshot-retention-count", v, 1, 1_000_000))?,
            snapshot_on_exit: boolean("storage-snapshot-on-exit", packaged)?,
            enable_backup_dir: boolean("storage-enable-backup-dir", true)?,
            restore_replication_state: boolean("replication-restore-state-on-startup", true)?,
            data_recovery_on_startup: boolean("data-recovery-on-startup", true)?,
            replica_check_frequency,
            management_port: get("management-port").map_or(Ok(0), |v| parse_num("management-port", v))?,
            memgraph_version: version,
            auth,
            rpc_timeout_override: get("fake-rpc-timeout-ms")
                .map(|v| parse_num("fake-rpc-timeout-ms", v).map(Duration::from_millis))
                .transpose()?,
            snapshot_micros_per_node: get("fake-snapshot-micros-per-node")
                .map_or(Ok(0), |v| parse_num("fake-snapshot-micros-per-node", v))?,
            recovery_micros_per_node: get("fake-recovery-micros-per-node")
                .map_or(Ok(0), |v| parse_num("fake-recovery-micros-per-node", v))?,
        })
    }

    /// Usage text for `--help`.
    pub fn usage() -> String {
        let mut s = String::from("fake-memgraph: a Memgraph stand-in for tests\n\nFlags:\n");
        for (name, kind) in FLAGS {
            let arg = if *kind == Kind::Bool { "=true|false" } else { "=VALUE" };
            s.push_str(&format!("  --{name}{arg}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_value_forms_and_bools() {
        let c = Config::parse_args([
            "--bolt-port",
            "7688",
            "--data-directory=/tmp/x",
            "--storage-wal-enabled=false",
            "--also-log-to-stderr",
            "--nostorage-snapshot-on-exit",
            "--storage_snapshot_interval_sec=0",
        ])
        .unwrap();
        assert_eq!(c.bolt_port, 7688);
        assert_eq!(c.data_directory, "/tmp/x");
        assert!(!c.wal_enabled);
        assert!(c.also_log_to_stderr);
        assert!(!c.snapshot_on_exit);
        assert_eq!(c.snapshot_interval_sec, 0);
    }

    #[test]
    fn unknown_flags_are_errors_naming_the_flag() {
        let e = Config::parse_args(["--storage-recover-on-startup=true"]).unwrap_err();
        assert_eq!(e, ConfigError::UnknownFlag("storage-recover-on-startup".into()));
        assert!(e.to_string().contains("storage-recover-on-startup"));
        assert_eq!(Config::parse_args(["--version"]).unwrap_err(), ConfigError::VersionRequested);
        assert_eq!(Config::parse_args(["--bolt-port"]).unwrap_err(), ConfigError::MissingValue("bolt-port".into()));
    }

    #[test]
    fn defaults_follow_packaged_or_compiled_values() {
        let c = Config::default();
        assert_eq!(c.bolt_port, 7687);
        assert!(c.wal_enabled && c.snapshot_on_exit);
        assert_eq!(c.snapshot_interval_sec, 300);
        assert_eq!(c.wal_flush_every_n_tx, 100_000);
        assert_eq!(c.snapshot_retention_count, 3);
        assert_eq!(c.replica_check_frequency, Duration::from_secs(1));
        assert_eq!(c.memgraph_version, NEWEST);
        let compiled = Config::parse_args(["--fake-defaults=compiled", "--memgraph-version=3.5"]).unwrap();
        assert!(!compiled.wal_enabled && !compiled.snapshot_on_exit);
        assert_eq!(compiled.snapshot_interval_sec, 0);
        assert_eq!(compiled.data_directory, "mg_data");
    }

    #[test]
    fn ranges_are_checked() {
        assert!(Config::parse_args(["--storage-wal-file-flush-every-n-tx=0"]).is_err());
        assert!(Config::parse_args(["--storage-snapshot-retention-count=0"]).is_err());
        assert!(Config::parse_args(["--log-level=LOUD"]).is_err());
        assert!(Config::parse_args(["--memgraph-version=4.0"]).is_err());
        let c = Config::parse_args(["--fake-replica-check-frequency-ms=50", "--log-level=info"]).unwrap();
        assert_eq!(c.replica_check_frequency, Duration::from_millis(50));
        assert_eq!(c.log_level, "INFO");
    }

    #[test]
    fn duration_knobs_default_to_instant() {
        let c = Config::default();
        assert_eq!((c.snapshot_micros_per_node, c.recovery_micros_per_node), (0, 0));
        let c = Config::parse_args(["--fake-snapshot-micros-per-node=250", "--fake-recovery-micros-per-node", "7"])
            .unwrap();
        assert_eq!((c.snapshot_micros_per_node, c.recovery_micros_per_node), (250, 7));
        assert!(Config::parse_args(["--fake-snapshot-micros-per-node=-1"]).is_err());
    }
}
