//! What the integration tests share. The metric names come from the documentation, not from
//! the code: a metric the operator stops exporting, or an alert that uses an undocumented one,
//! fails a test instead of quietly changing the list.

use std::path::Path;

/// The metrics `docs/observability.md` documents, by the table they are in.
pub struct DocumentedMetrics {
    /// Gauges.
    pub gauges: Vec<String>,
    /// Counters.
    pub counters: Vec<String>,
    /// Histograms.
    pub histograms: Vec<String>,
}

impl DocumentedMetrics {
    /// Every documented name.
    #[allow(dead_code)] // each test binary compiles this module; not every one uses all of it
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.gauges.iter().chain(&self.counters).chain(&self.histograms)
    }
}

/// Read the metric tables (`### Gauges`, `### Counters`, `### Histograms`) of
/// `docs/observability.md`: the first cell of each row that names a `memgraph_` metric.
pub fn documented_metrics() -> DocumentedMetrics {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/observability.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = DocumentedMetrics { gauges: Vec::new(), counters: Vec::new(), histograms: Vec::new() };
    let mut table: Option<&mut Vec<String>> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            table = match heading.trim() {
                "Gauges" => Some(&mut out.gauges),
                "Counters" => Some(&mut out.counters),
                "Histograms" => Some(&mut out.histograms),
                _ => None,
            };
            continue;
        }
        if line.starts_with("## ") {
            table = None;
        }
        let Some(names) = table.as_deref_mut() else { continue };
        let first = line.strip_prefix("| `").and_then(|rest| rest.split('`').next());
        if let Some(name) = first.filter(|n| n.starts_with("memgraph_")) {
            names.push(name.to_owned());
        }
    }
    assert!(
        !out.gauges.is_empty() && !out.counters.is_empty() && !out.histograms.is_empty(),
        "docs/observability.md lost its metric tables"
    );
    out
}
