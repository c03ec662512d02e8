//! A run drawn as a picture: lanes of states over simulated time, fault windows as bands across
//! them and instant marks (violations, stale reads, unavailability) on top, rendered as a
//! standalone SVG so that a failing seed can be understood at a glance.
//!
//! The model is plain data. [`LaneBuilder`] turns periodic samples into segments; [`render_svg`]
//! draws a [`Picture`]. Rendering is deterministic: the same picture gives the same bytes.

use std::fmt::Write as _;

/// A run drawn as lanes over simulated time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picture {
    /// Drawn on top, e.g. "seed 42: 3 violations".
    pub title: String,
    /// Simulated milliseconds at the end of the run; the time axis spans 0..end_ms (widened if
    /// anything lies beyond it).
    pub end_ms: u64,
    /// Lanes from top to bottom.
    pub lanes: Vec<Lane>,
    /// Fault windows.
    pub bands: Vec<Band>,
    /// Instant markers.
    pub marks: Vec<Mark>,
}

impl Picture {
    /// An empty picture.
    pub fn new(title: impl Into<String>, end_ms: u64) -> Self {
        Self { title: title.into(), end_ms, ..Self::default() }
    }

    /// Append a lane and return its index, for [`Mark::lane`].
    pub fn push_lane(&mut self, lane: Lane) -> usize {
        self.lanes.push(lane);
        self.lanes.len() - 1
    }

    /// The index of the first lane called `name`.
    pub fn lane_index(&self, name: &str) -> Option<usize> {
        self.lanes.iter().position(|lane| lane.name == name)
    }
}

/// One horizontal lane, e.g. "g-read-1-0 role", "read_1 registration", "write availability".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lane {
    /// Shown in the left gutter.
    pub name: String,
    /// Lanes of one pod share a group; consecutive lanes of different groups are separated.
    pub group: String,
    /// Stretches of time in one state, in time order; time not covered is drawn as "no state".
    pub segments: Vec<Segment>,
}

/// A stretch of time in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Simulated milliseconds, inclusive.
    pub start_ms: u64,
    /// Simulated milliseconds, exclusive.
    pub end_ms: u64,
    /// The state, drawn inside the segment when it fits and shown on hover.
    pub text: String,
    /// Its colour.
    pub tone: Tone,
}

/// Colour class of a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// Healthy (green).
    Good,
    /// Degraded or in transition (amber).
    Warn,
    /// Broken (red).
    Bad,
    /// Informational, neither good nor bad (grey-blue).
    Neutral,
    /// Absent, stopped, not applicable (light grey).
    Off,
}

impl Tone {
    /// How bad: Bad > Warn > Neutral > Good > Off. Coalesced segments keep the worse tone.
    pub fn severity(self) -> u8 {
        match self {
            Tone::Off => 0,
            Tone::Good => 1,
            Tone::Neutral => 2,
            Tone::Warn => 3,
            Tone::Bad => 4,
        }
    }

    /// The worse of two tones.
    pub fn worse(self, other: Tone) -> Tone {
        if other.severity() > self.severity() { other } else { self }
    }

    fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Neutral => "neutral",
            Tone::Off => "off",
        }
    }
}

/// A fault window, drawn as a translucent band across every lane and labelled at the top.
/// An instant fault has `start_ms == end_ms` and is drawn as a thin line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    /// Simulated milliseconds.
    pub start_ms: u64,
    /// Simulated milliseconds; equal to `start_ms` for an instant fault.
    pub end_ms: u64,
    /// e.g. "partition g-read-1-0".
    pub text: String,
}

/// An instant marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Simulated milliseconds.
    pub at_ms: u64,
    /// The lane it belongs to, or `None` (or an index out of range) for the whole picture.
    pub lane: Option<usize>,
    /// Shown on hover; for violations also printed above the lanes.
    pub text: String,
    /// Its kind.
    pub kind: MarkKind,
}

/// What a mark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkKind {
    /// An oracle violation: red, thick, labelled.
    Violation,
    /// A stale read (purple).
    StaleRead,
    /// The start of unavailability (orange).
    Unavailable,
    /// Anything else worth pointing at (blue).
    Info,
}

impl MarkKind {
    /// Draw order: later kinds are drawn over earlier ones.
    fn rank(self) -> u8 {
        match self {
            MarkKind::Info => 0,
            MarkKind::Unavailable => 1,
            MarkKind::StaleRead => 2,
            MarkKind::Violation => 3,
        }
    }

    fn class(self) -> &'static str {
        match self {
            MarkKind::Violation => "mv",
            MarkKind::StaleRead => "ms",
            MarkKind::Unavailable => "mu",
            MarkKind::Info => "mi",
        }
    }
}

/// Builds a [`Lane`] from the state sampled at regular times: consecutive equal samples (same
/// text and tone) merge into one segment. To keep a lane that flips often (a registration going
/// ready/replicating on every write) small, map the flipping states to one text before sampling;
/// the renderer also coalesces segments narrower than a pixel.
#[derive(Debug, Clone)]
pub struct LaneBuilder {
    lane: Lane,
    /// The state since its start; its `end_ms` is not used until it is closed.
    open: Option<Segment>,
}

impl LaneBuilder {
    /// A lane with no segments yet.
    pub fn new(name: impl Into<String>, group: impl Into<String>) -> Self {
        Self { lane: Lane { name: name.into(), group: group.into(), segments: Vec::new() }, open: None }
    }

    /// The state at `at_ms`, which holds until the next different sample (or [`Self::stop`], or
    /// [`Self::finish`]). Samples should come in time order; an earlier time counts as the time
    /// of the current state's start. Allocates only when the state changes.
    pub fn sample(&mut self, at_ms: u64, text: &str, tone: Tone) {
        let Some(open) = &mut self.open else {
            self.open = Some(Segment { start_ms: at_ms, end_ms: at_ms, text: text.to_owned(), tone });
            return;
        };
        if open.text == text && open.tone == tone {
            return;
        }
        let at_ms = at_ms.max(open.start_ms);
        if at_ms > open.start_ms {
            let mut closed = Segment { start_ms: at_ms, end_ms: at_ms, text: text.to_owned(), tone };
            std::mem::swap(open, &mut closed);
            closed.end_ms = at_ms;
            self.lane.segments.push(closed);
            return;
        }
        // A state that lasted no time: replace it, joining the segment before it if equal.
        open.text.clear();
        open.text.push_str(text);
        open.tone = tone;
        if let Some(last) = self.lane.segments.last()
            && last.end_ms == open.start_ms
            && last.text == open.text
            && last.tone == open.tone
        {
            open.start_ms = last.start_ms;
            self.lane.segments.pop();
        }
    }

    /// End the current state at `at_ms` without a new one: nothing is drawn until the next
    /// sample.
    pub fn stop(&mut self, at_ms: u64) {
        if let Some(mut open) = self.open.take() {
            open.end_ms = at_ms.max(open.start_ms);
            if open.end_ms > open.start_ms {
                self.lane.segments.push(open);
            }
        }
    }

    /// The lane, with the current state closed at `end_ms`.
    pub fn finish(mut self, end_ms: u64) -> Lane {
        self.stop(end_ms);
        self.lane
    }
}

// Layout, in pixels.
const WIDTH: f64 = 1600.0;
const GUTTER: f64 = 240.0;
const RIGHT: f64 = 28.0;
const PLOT_X: f64 = GUTTER;
const PLOT_W: f64 = WIDTH - GUTTER - RIGHT;
const FONT: f64 = 11.0;
/// Advance of one character of the monospace font at [`FONT`].
const CHAR_W: f64 = FONT * 0.6;
const TITLE_H: f64 = 40.0;
/// Height of one row of staggered labels (bands, violations).
const ROW_H: f64 = 14.0;
const MAX_ROWS: usize = 8;
/// Longest label printed in a label row; the full text is on hover.
const LABEL_CHARS: usize = 48;
const AXIS_H: f64 = 30.0;
const LANE_H: f64 = 18.0;
const LANE_GAP: f64 = 3.0;
const GROUP_GAP: f64 = 10.0;
const BOTTOM_AXIS_H: f64 = 22.0;
const LEGEND_H: f64 = 40.0;

const STYLE: &str = "text{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:11px;fill:#1a1a1a}
.title{font-size:16px;font-weight:bold}
.dim{fill:#666666}
.tick{font-size:10px;fill:#555555}
.name{fill:#1a1a1a}
.in{pointer-events:none}
.lane{fill:#f4f4f4}
.zebra{fill:#ececec}
.good{fill:#81c784}
.warn{fill:#ffd54f}
.bad{fill:#e57373}
.neutral{fill:#b0bec5}
.off{fill:#d6d6d6}
.band{fill:#ff8a65;fill-opacity:0.16;pointer-events:none}
.bandhit{fill:#ff8a65;fill-opacity:0.28}
.bandline{stroke:#d84315;stroke-opacity:0.7;stroke-width:1.5;pointer-events:none}
.bandtext{fill:#bf360c}
.axis{stroke:#555555;stroke-width:1}
.grid{stroke:#000000;stroke-opacity:0.08;stroke-width:1;pointer-events:none}
.sep{stroke:#9e9e9e;stroke-width:1}
.mv{stroke:#b71c1c;fill:#d32f2f;stroke-width:2}
.ms{stroke:#7b1fa2;fill:#8e24aa;stroke-width:1}
.mu{stroke:#e65100;fill:#ef6c00;stroke-width:1}
.mi{stroke:#1565c0;fill:#1e88e5;stroke-width:1}
.swatch{stroke:#9e9e9e;stroke-width:0.5}
.lead{stroke:#b71c1c;stroke-width:1;stroke-dasharray:3,2;pointer-events:none}
.vtext{fill:#b71c1c;stroke:none;font-weight:bold}
";

/// Maps simulated time to x.
struct Scale {
    end_ms: u64,
}

impl Scale {
    fn x(&self, ms: u64) -> f64 {
        PLOT_X + PLOT_W * ms.min(self.end_ms) as f64 / self.end_ms as f64
    }

    fn width(&self, start_ms: u64, end_ms: u64) -> f64 {
        self.x(end_ms) - self.x(start_ms.min(end_ms))
    }
}

/// Simulated milliseconds as seconds, with one decimal ("12.3") or, if `fine`, three ("12.345").
fn secs_with(ms: u64, fine: bool) -> String {
    if fine { format!("{}.{:03}", ms / 1000, ms % 1000) } else { format!("{}.{}", ms / 1000, ms % 1000 / 100) }
}

/// Simulated milliseconds as seconds: one decimal when that is exact, else three.
fn secs(ms: u64) -> String {
    secs_with(ms, !ms.is_multiple_of(100))
}

/// "start–end s", or "at s" for an instant; both ends with the same precision.
fn span(start_ms: u64, end_ms: u64) -> String {
    let fine = !start_ms.is_multiple_of(100) || !end_ms.is_multiple_of(100);
    if start_ms == end_ms {
        format!("{} s", secs_with(start_ms, fine))
    } else {
        format!("{}–{} s", secs_with(start_ms, fine), secs_with(end_ms, fine))
    }
}

/// `text` made safe for XML character data and attribute values. Characters XML 1.0 does not
/// allow become U+FFFD.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `text`, ending in "…" when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn text_w(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_W
}

/// The tick spacing: the smallest round step giving at most one tick per ~80 px.
fn tick_step_ms(end_ms: u64) -> u64 {
    const STEPS_MS: [u64; 20] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
        1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 86_400_000,
    ];
    let max_ticks = (PLOT_W / 80.0) as u64;
    STEPS_MS
        .into_iter()
        .find(|step| end_ms.div_ceil(*step) <= max_ticks)
        .unwrap_or_else(|| end_ms.div_ceil(max_ticks).div_ceil(86_400_000) * 86_400_000)
}

fn tick_label(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{} s", ms / 1000) } else { format!("{} s", secs(ms)) }
}

/// Give each label, `(x, width)` in x order, a row so that labels in one row do not overlap.
/// Beyond [`MAX_ROWS`] rows a label goes to the row that frees up first. Returns the rows and
/// their number.
fn stagger(labels: &[(f64, f64)]) -> (Vec<usize>, usize) {
    let mut row_ends: Vec<f64> = Vec::new();
    let mut rows = Vec::with_capacity(labels.len());
    for &(x, w) in labels {
        let row = match row_ends.iter().position(|end| *end <= x) {
            Some(row) => row,
            None if row_ends.len() < MAX_ROWS => {
                row_ends.push(f64::NEG_INFINITY);
                row_ends.len() - 1
            }
            None => {
                let mut best = 0;
                for (row, end) in row_ends.iter().enumerate() {
                    if *end < row_ends[best] {
                        best = row;
                    }
                }
                best
            }
        };
        row_ends[row] = x + w + 8.0;
        rows.push(row);
    }
    (rows, row_ends.len())
}

/// Where a label starting at `x` goes so it stays inside the picture.
fn label_x(x: f64, w: f64) -> f64 {
    x.min(WIDTH - 4.0 - w).max(PLOT_X)
}

/// What is drawn for one or more consecutive segments of a lane.
#[derive(Debug)]
struct Piece<'a> {
    start_ms: u64,
    end_ms: u64,
    tone: Tone,
    /// The distinct texts, sorted, at most [`Piece::TEXTS`].
    texts: Vec<&'a str>,
    /// More distinct texts than kept.
    more: bool,
    /// How many segments.
    states: usize,
    /// Still narrower than a pixel: takes in the narrow segments that follow.
    open: bool,
}

impl<'a> Piece<'a> {
    const TEXTS: usize = 4;

    fn new(segment: &'a Segment, open: bool) -> Self {
        Piece {
            start_ms: segment.start_ms,
            end_ms: segment.end_ms,
            tone: segment.tone,
            texts: vec![segment.text.as_str()],
            more: false,
            states: 1,
            open,
        }
    }

    fn add_text(&mut self, text: &'a str) {
        if let Err(at) = self.texts.binary_search(&text) {
            self.texts.insert(at, text);
            if self.texts.len() > Self::TEXTS {
                self.texts.pop();
                self.more = true;
            }
        }
    }

    fn label(&self) -> String {
        let mut label = self.texts.join(" / ");
        if self.more {
            label.push_str(" / …");
        }
        label
    }
}

/// The pieces drawn for a lane: segments at least a pixel wide stay as they are; runs of
/// narrower ones coalesce into pieces of about a pixel with the worst tone among them; then
/// adjacent pieces with the same tone and texts join. A lane yields at most about two pieces per
/// pixel of width, however many segments it has.
fn coalesce<'a>(segments: &'a [Segment], scale: &Scale) -> Vec<Piece<'a>> {
    let mut sorted: Vec<&Segment> = segments.iter().filter(|s| s.start_ms <= s.end_ms).collect();
    sorted.sort_by_key(|s| s.start_ms);
    let mut pieces: Vec<Piece<'a>> = Vec::new();
    for segment in sorted {
        let narrow = scale.width(segment.start_ms, segment.end_ms) < 1.0;
        if narrow
            && let Some(last) = pieces.last_mut()
            && last.open
            && scale.width(last.end_ms, segment.start_ms) < 1.0
        {
            last.end_ms = last.end_ms.max(segment.end_ms);
            last.tone = last.tone.worse(segment.tone);
            last.add_text(&segment.text);
            last.states += 1;
            last.open = scale.width(last.start_ms, last.end_ms) < 1.0;
            continue;
        }
        pieces.push(Piece::new(segment, narrow));
    }
    let mut joined: Vec<Piece<'a>> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        if let Some(last) = joined.last_mut()
            && last.tone == piece.tone
            && last.texts == piece.texts
            && last.more == piece.more
            && scale.width(last.end_ms, piece.start_ms) < 1.0
        {
            last.end_ms = last.end_ms.max(piece.end_ms);
            last.states += piece.states;
            continue;
        }
        joined.push(piece);
    }
    joined
}

/// One or more marks of one kind and lane within a pixel.
struct MarkGroup<'a> {
    first_ms: u64,
    last_ms: u64,
    lane: Option<usize>,
    kind: MarkKind,
    text: &'a str,
    count: usize,
}

impl MarkGroup<'_> {
    fn title(&self) -> String {
        if self.count == 1 {
            format!("{}, {}", self.text, span(self.first_ms, self.last_ms))
        } else {
            format!("{} (+{} more), {}", self.text, self.count - 1, span(self.first_ms, self.last_ms))
        }
    }

    fn label(&self) -> String {
        let text = clip(self.text, LABEL_CHARS);
        if self.count == 1 { text } else { format!("{text} (+{})", self.count - 1) }
    }
}

/// Marks grouped per kind and lane within a pixel, in draw order (violations last).
fn group_marks<'a>(marks: &'a [Mark], lanes: usize, scale: &Scale) -> Vec<MarkGroup<'a>> {
    let mut sorted: Vec<(Option<usize>, &Mark)> =
        marks.iter().map(|mark| (mark.lane.filter(|lane| *lane < lanes), mark)).collect();
    sorted.sort_by_key(|(lane, mark)| (mark.kind.rank(), *lane, mark.at_ms));
    let mut groups: Vec<MarkGroup<'a>> = Vec::new();
    for (lane, mark) in sorted {
        if let Some(last) = groups.last_mut()
            && last.kind == mark.kind
            && last.lane == lane
            && scale.width(last.first_ms, mark.at_ms) < 1.0
        {
            last.last_ms = mark.at_ms;
            last.count += 1;
            continue;
        }
        groups.push(MarkGroup {
            first_ms: mark.at_ms,
            last_ms: mark.at_ms,
            lane,
            kind: mark.kind,
            text: &mark.text,
            count: 1,
        });
    }
    groups
}

/// Appends formatted text to a String; writing to a String cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {
        $out.write_fmt(format_args!($($arg)*)).expect("writing to a String does not fail")
    };
}

/// Draw `p` as a standalone SVG 1.1 document, 1600 px wide, as tall as its lanes need.
pub fn render_svg(p: &Picture) -> String {
    let lane_end = p.lanes.iter().flat_map(|lane| &lane.segments).map(|s| s.end_ms.max(s.start_ms)).max();
    let band_end = p.bands.iter().map(|band| band.end_ms.max(band.start_ms)).max();
    let mark_end = p.marks.iter().map(|mark| mark.at_ms).max();
    let end_ms = [Some(p.end_ms), lane_end, band_end, mark_end].into_iter().flatten().max().unwrap_or(0).max(1);
    let scale = Scale { end_ms };

    // Band labels, staggered.
    let mut band_order: Vec<&Band> = p.bands.iter().collect();
    band_order.sort_by_key(|band| (band.start_ms, band.end_ms));
    let band_labels: Vec<(String, f64, f64)> = band_order
        .iter()
        .map(|band| {
            let text = clip(&band.text, LABEL_CHARS);
            let w = text_w(&text);
            (text, label_x(scale.x(band.start_ms), w), w)
        })
        .collect();
    let (band_rows, band_row_count) = stagger(&band_labels.iter().map(|(_, x, w)| (*x, *w)).collect::<Vec<_>>());

    // Violation labels, staggered.
    let marks = group_marks(&p.marks, p.lanes.len(), &scale);
    let mut violations: Vec<(usize, String, f64, f64)> = marks
        .iter()
        .enumerate()
        .filter(|(_, group)| group.kind == MarkKind::Violation)
        .map(|(index, group)| {
            let text = group.label();
            let w = text_w(&text) + 8.0;
            (index, text, label_x(scale.x(group.first_ms) - 4.0, w), w)
        })
        .collect();
    violations.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
    let (violation_rows, violation_row_count) =
        stagger(&violations.iter().map(|(_, _, x, w)| (*x, *w)).collect::<Vec<_>>());

    // Vertical layout.
    let bands_top = TITLE_H;
    let violations_top = bands_top + band_row_count as f64 * ROW_H;
    let axis_top = violations_top + violation_row_count as f64 * ROW_H;
    let lanes_top = axis_top + AXIS_H;
    let mut lane_tops = Vec::with_capacity(p.lanes.len());
    let mut separators = Vec::new();
    let mut group_starts = vec![0];
    let mut y = lanes_top;
    for (index, lane) in p.lanes.iter().enumerate() {
        if index > 0 && lane.group != p.lanes[index - 1].group {
            separators.push(y + GROUP_GAP / 2.0 - LANE_GAP / 2.0);
            group_starts.push(index);
            y += GROUP_GAP;
        }
        lane_tops.push(y);
        y += LANE_H + LANE_GAP;
    }
    let lanes_bottom = if p.lanes.is_empty() { lanes_top } else { y - LANE_GAP };
    let legend_top = lanes_bottom + BOTTOM_AXIS_H;
    let height = legend_top + LEGEND_H;
    let plot_right = PLOT_X + PLOT_W;

    let mut out = String::with_capacity(4096 + 256 * p.lanes.iter().map(|l| l.segments.len()).sum::<usize>());
    put!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    put!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{WIDTH:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH:.0} {height:.0}\">\n"
    );
    put!(out, "<title>{}</title>\n", esc(&p.title));
    put!(out, "<style type=\"text/css\"><![CDATA[\n{STYLE}]]></style>\n");
    put!(out, "<rect x=\"0\" y=\"0\" width=\"{WIDTH:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>\n");

    // Title.
    put!(out, "<text class=\"title\" x=\"12\" y=\"24\">{}</text>\n", esc(&p.title));
    put!(
        out,
        "<text class=\"dim\" x=\"{:.1}\" y=\"24\" text-anchor=\"end\">simulated time, end {} s, {} lanes, {} faults, \
         {} marks</text>\n",
        WIDTH - RIGHT,
        secs(end_ms),
        p.lanes.len(),
        p.bands.len(),
        p.marks.len()
    );

    // Gutter: alternate groups shaded, lane names.
    for (n, window) in group_starts.iter().chain([&p.lanes.len()]).collect::<Vec<_>>().windows(2).enumerate() {
        let (first, next) = (*window[0], *window[1]);
        if n % 2 == 1 && first < next {
            let top = lane_tops[first] - LANE_GAP / 2.0;
            let bottom = lane_tops[next - 1] + LANE_H + LANE_GAP / 2.0;
            put!(
                out,
                "<rect class=\"zebra\" x=\"0\" y=\"{top:.1}\" width=\"{GUTTER:.0}\" height=\"{:.1}\"/>\n",
                bottom - top
            );
        }
    }
    let name_chars = ((GUTTER - 16.0) / CHAR_W) as usize;
    for (lane, top) in p.lanes.iter().zip(&lane_tops) {
        let shown = clip(&lane.name, name_chars);
        let hover = if shown == lane.name { String::new() } else { format!("<title>{}</title>", esc(&lane.name)) };
        put!(out, "<text class=\"name\" x=\"8\" y=\"{:.1}\">{hover}{}</text>\n", top + 13.0, esc(&shown));
    }

    // Lanes.
    for (lane, top) in p.lanes.iter().zip(&lane_tops) {
        put!(
            out,
            "<rect class=\"lane\" x=\"{PLOT_X:.1}\" y=\"{top:.1}\" width=\"{PLOT_W:.1}\" height=\"{LANE_H:.1}\"/>\n"
        );
        for piece in coalesce(&lane.segments, &scale) {
            let w = scale.width(piece.start_ms, piece.end_ms).max(1.0);
            let x = scale.x(piece.start_ms).min(plot_right - w);
            let label = piece.label();
            let states = if piece.states > 1 { format!(" ({} states)", piece.states) } else { String::new() };
            put!(
                out,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{LANE_H:.1}\"><title>{}{states}, \
                 {}</title></rect>\n",
                piece.tone.class(),
                esc(&label),
                span(piece.start_ms, piece.end_ms)
            );
            let fits = ((w - 6.0) / CHAR_W).max(0.0) as usize;
            let inside = if label.chars().count() <= fits {
                Some(label)
            } else if fits >= 4 {
                Some(clip(&label, fits))
            } else {
                None
            };
            if let Some(inside) = inside {
                put!(out, "<text class=\"in\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\n", x + 3.0, top + 13.0, esc(&inside));
            }
        }
    }

    // Grid and axes.
    let step = tick_step_ms(end_ms);
    let ticks: Vec<u64> = (0..).map(|n| n * step).take_while(|ms| *ms <= end_ms).collect();
    put!(
        out,
        "<line class=\"axis\" x1=\"{PLOT_X:.1}\" y1=\"{lanes_top:.1}\" x2=\"{plot_right:.1}\" y2=\"{lanes_top:.1}\"/>\n"
    );
    put!(
        out,
        "<line class=\"axis\" x1=\"{PLOT_X:.1}\" y1=\"{lanes_bottom:.1}\" x2=\"{plot_right:.1}\" y2=\"{lanes_bottom:.1}\"/>\n"
    );
    for ms in &ticks {
        let x = scale.x(*ms);
        let label = tick_label(*ms);
        put!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{lanes_top:.1}\" x2=\"{x:.1}\" y2=\"{lanes_bottom:.1}\"/>\n"
        );
        put!(
            out,
            "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{lanes_top:.1}\"/>\n",
            lanes_top - 4.0
        );
        put!(
            out,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            lanes_top - 14.0
        );
        put!(
            out,
            "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{lanes_bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\n",
            lanes_bottom + 4.0
        );
        put!(
            out,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            lanes_bottom + 15.0
        );
    }

    // Group separators.
    for y in &separators {
        put!(out, "<line class=\"sep\" x1=\"0\" y1=\"{y:.1}\" x2=\"{WIDTH:.0}\" y2=\"{y:.1}\"/>\n");
    }

    // Fault bands: translucent over the lanes (so they show through segments) but letting the
    // pointer through to them; the label row carries the hover text.
    for ((band, (text, label_x, _)), row) in band_order.iter().zip(&band_labels).zip(&band_rows) {
        let row_top = bands_top + *row as f64 * ROW_H;
        let x = scale.x(band.start_ms);
        let hover = format!("<title>{}, {}</title>", esc(&band.text), span(band.start_ms, band.end_ms));
        if band.end_ms > band.start_ms {
            let w = scale.width(band.start_ms, band.end_ms).max(1.0);
            put!(
                out,
                "<rect class=\"band\" x=\"{x:.1}\" y=\"{row_top:.1}\" width=\"{w:.1}\" height=\"{:.1}\"/>\n",
                lanes_bottom - row_top
            );
            put!(
                out,
                "<rect class=\"bandhit\" x=\"{x:.1}\" y=\"{row_top:.1}\" width=\"{w:.1}\" height=\"{:.1}\">{hover}</rect>\n",
                ROW_H - 2.0
            );
        } else {
            put!(
                out,
                "<line class=\"bandline\" x1=\"{x:.1}\" y1=\"{row_top:.1}\" x2=\"{x:.1}\" y2=\"{lanes_bottom:.1}\"/>\n"
            );
        }
        put!(
            out,
            "<text class=\"bandtext\" x=\"{label_x:.1}\" y=\"{:.1}\">{hover}{}</text>\n",
            row_top + 11.0,
            esc(text)
        );
    }

    // Marks, violations last so they lie on top.
    let violation_row: Vec<Option<(usize, &str, f64)>> = {
        let mut rows = vec![None; marks.len()];
        for ((index, text, x, _), row) in violations.iter().zip(&violation_rows) {
            rows[*index] = Some((*row, text.as_str(), *x));
        }
        rows
    };
    for (group, label) in marks.iter().zip(&violation_row) {
        let x = scale.x(group.first_ms);
        let violation = group.kind == MarkKind::Violation;
        let (top, bottom) = match group.lane {
            Some(lane) => (lane_tops[lane], lane_tops[lane] + LANE_H),
            None => (lanes_top, lanes_bottom.max(lanes_top + LANE_H)),
        };
        let size = if violation { 6.0 } else { 4.0 };
        put!(out, "<g class=\"{}\"><title>{}</title>", group.kind.class(), esc(&group.title()));
        if let Some((row, _, _)) = label {
            let row_top = violations_top + *row as f64 * ROW_H;
            put!(
                out,
                "<line class=\"lead\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{top:.1}\"/>",
                row_top + ROW_H - 2.0
            );
        }
        put!(out, "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>");
        let (apex, base) = if group.lane.is_some() { (top + size, top) } else { (top, top - size * 1.4) };
        put!(
            out,
            "<polygon points=\"{:.1},{base:.1} {:.1},{base:.1} {x:.1},{apex:.1}\" stroke-width=\"0\"/>",
            x - size,
            x + size
        );
        if let Some((row, text, label_x)) = label {
            let row_top = violations_top + *row as f64 * ROW_H;
            put!(
                out,
                "<text class=\"vtext\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                label_x + 4.0,
                row_top + 11.0,
                esc(text)
            );
        }
        put!(out, "</g>\n");
    }

    // Legend.
    let mut x = 12.0;
    let swatch_y = legend_top + 12.0;
    let text_y = swatch_y + 9.0;
    put!(out, "<g class=\"legend\">");
    for (class, name) in [
        ("good", "good"),
        ("warn", "warn"),
        ("bad", "bad"),
        ("neutral", "neutral"),
        ("off", "off"),
        ("lane", "no state"),
        ("bandhit", "fault window"),
    ] {
        put!(
            out,
            "<rect class=\"{class} swatch\" x=\"{x:.1}\" y=\"{swatch_y:.1}\" width=\"16\" height=\"10\"><title>{name}</title></rect>"
        );
        put!(out, "<text x=\"{:.1}\" y=\"{text_y:.1}\">{name}</text>", x + 20.0);
        x += 20.0 + text_w(name) + 16.0;
    }
    put!(
        out,
        "<line class=\"bandline\" x1=\"{:.1}\" y1=\"{swatch_y:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
        x + 8.0,
        x + 8.0,
        swatch_y + 10.0
    );
    put!(out, "<text x=\"{:.1}\" y=\"{text_y:.1}\">instant fault</text>", x + 20.0);
    x += 20.0 + text_w("instant fault") + 24.0;
    for (kind, name) in [
        (MarkKind::Violation, "violation"),
        (MarkKind::StaleRead, "stale read"),
        (MarkKind::Unavailable, "unavailable"),
        (MarkKind::Info, "info"),
    ] {
        let size = if kind == MarkKind::Violation { 6.0 } else { 4.0 };
        let mid = x + 8.0;
        put!(
            out,
            "<g class=\"{}\"><title>{name}</title><line x1=\"{mid:.1}\" y1=\"{swatch_y:.1}\" x2=\"{mid:.1}\" y2=\"{:.1}\"/>\
             <polygon points=\"{:.1},{swatch_y:.1} {:.1},{swatch_y:.1} {mid:.1},{:.1}\" stroke-width=\"0\"/></g>",
            kind.class(),
            swatch_y + 10.0,
            mid - size,
            mid + size,
            swatch_y + size
        );
        put!(out, "<text x=\"{:.1}\" y=\"{text_y:.1}\">{name}</text>", x + 20.0);
        x += 20.0 + text_w(name) + 16.0;
    }
    put!(out, "</g>\n");
    put!(out, "</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_ms: u64, end_ms: u64, text: &str, tone: Tone) -> Segment {
        Segment { start_ms, end_ms, text: text.to_owned(), tone }
    }

    /// Checks that `svg` is well-formed XML as far as this renderer can produce it: declaration,
    /// CDATA, balanced and properly nested elements with quoted attributes, known entities only,
    /// one root.
    fn check_xml(svg: &str) -> Result<(), String> {
        fn check_entities(text: &str) -> Result<(), String> {
            let mut rest = text;
            while let Some(at) = rest.find('&') {
                let after = &rest[at + 1..];
                let end = after.find(';').ok_or_else(|| format!("unterminated entity in {text:?}"))?;
                if !["amp", "lt", "gt", "quot", "apos"].contains(&&after[..end]) {
                    return Err(format!("unknown entity &{};", &after[..end]));
                }
                rest = &after[end + 1..];
            }
            if text.contains("]]>") {
                return Err("]]> in text".to_owned());
            }
            Ok(())
        }
        let mut stack: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = svg;
        if let Some(decl) = rest.strip_prefix("<?xml") {
            rest = &decl[decl.find("?>").ok_or("unterminated declaration")? + 2..];
        }
        loop {
            let Some(open) = rest.find('<') else {
                if !rest.trim().is_empty() && stack.is_empty() {
                    return Err(format!("text outside the root: {rest:?}"));
                }
                check_entities(rest)?;
                break;
            };
            let text = &rest[..open];
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            check_entities(text)?;
            rest = &rest[open..];
            if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
                if stack.is_empty() {
                    return Err("CDATA outside the root".to_owned());
                }
                rest = &cdata[cdata.find("]]>").ok_or("unterminated CDATA")? + 3..];
                continue;
            }
            if let Some(comment) = rest.strip_prefix("<!--") {
                rest = &comment[comment.find("-->").ok_or("unterminated comment")? + 3..];
                continue;
            }
            // A tag: find its end outside quoted attribute values.
            let mut quote = None;
            let mut end = None;
            for (i, c) in rest.char_indices().skip(1) {
                match (quote, c) {
                    (None, '"' | '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), '<') => return Err(format!("< in an attribute value: {}", &rest[..i])),
                    (None, '<') => return Err(format!("< inside a tag: {}", &rest[..i])),
                    (None, '>') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.strip_suffix('/').unwrap_or(tag);
            let name = body.split_whitespace().next().ok_or("empty tag")?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                return Err(format!("bad tag name {name:?}"));
            }
            // Attributes: name="value" pairs.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs.find('=').ok_or_else(|| format!("attribute without value in <{tag}>"))?;
                let quote = attrs[eq + 1..].chars().next().ok_or("missing value")?;
                if quote != '"' && quote != '\'' {
                    return Err(format!("unquoted attribute in <{tag}>"));
                }
                let value_start = eq + 2;
                let value_end = value_start + attrs[value_start..].find(quote).ok_or("unterminated value")?;
                check_entities(&attrs[value_start..value_end])?;
                attrs = attrs[value_end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    fn sample_picture() -> Picture {
        let mut picture = Picture::new("seed 7: 1 violation", 900_000);
        let mut role = LaneBuilder::new("g-read-1-0 role", "g-read-1-0");
        let mut label = LaneBuilder::new("g-read-1-0 label", "g-read-1-0");
        let mut registration = LaneBuilder::new("read_1 registration", "read_1");
        for at in (0..900_000).step_by(100) {
            role.sample(at, if at < 400_000 { "main" } else { "replica" }, Tone::Good);
            label.sample(at, if (300_000..420_000).contains(&at) { "stale" } else { "ok" }, Tone::Warn);
            let (text, tone) = if at % 200 == 0 { ("ready", Tone::Good) } else { ("replicating", Tone::Neutral) };
            registration.sample(at, text, tone);
        }
        picture.push_lane(role.finish(900_000));
        picture.push_lane(label.finish(900_000));
        let lane = picture.push_lane(registration.finish(900_000));
        picture.bands.push(Band { start_ms: 100_000, end_ms: 200_000, text: "partition g-read-1-0".into() });
        picture.bands.push(Band { start_ms: 110_000, end_ms: 300_000, text: "clock skew g-read-1-1".into() });
        picture.bands.push(Band { start_ms: 500_000, end_ms: 500_000, text: "kill g-read-1-0".into() });
        picture.marks.push(Mark { at_ms: 410_000, lane: None, text: "two mains".into(), kind: MarkKind::Violation });
        picture.marks.push(Mark {
            at_ms: 350_000,
            lane: Some(lane),
            text: "stale read".into(),
            kind: MarkKind::StaleRead,
        });
        picture.marks.push(Mark {
            at_ms: 420_000,
            lane: Some(99),
            text: "writes unavailable".into(),
            kind: MarkKind::Unavailable,
        });
        picture
    }

    #[test]
    fn builder_merges_equal_samples() {
        let mut b = LaneBuilder::new("n", "g");
        for at in (0..1_000).step_by(100) {
            b.sample(at, "a", Tone::Good);
        }
        for at in (1_000..2_000).step_by(100) {
            b.sample(at, "b", Tone::Bad);
        }
        for at in (2_000..3_000).step_by(100) {
            b.sample(at, "b", Tone::Warn);
        }
        let lane = b.finish(3_500);
        assert_eq!(lane.name, "n");
        assert_eq!(lane.group, "g");
        assert_eq!(
            lane.segments,
            vec![seg(0, 1_000, "a", Tone::Good), seg(1_000, 2_000, "b", Tone::Bad), seg(2_000, 3_500, "b", Tone::Warn)]
        );
    }

    #[test]
    fn builder_replaces_states_that_last_no_time() {
        let mut b = LaneBuilder::new("n", "g");
        b.sample(0, "a", Tone::Good);
        b.sample(100, "b", Tone::Bad);
        b.sample(100, "a", Tone::Good);
        b.sample(200, "b", Tone::Bad);
        b.sample(150, "c", Tone::Warn); // earlier than the current state's start: counts as at 200
        let lane = b.finish(300);
        assert_eq!(lane.segments, vec![seg(0, 200, "a", Tone::Good), seg(200, 300, "c", Tone::Warn)]);
    }

    #[test]
    fn builder_stop_and_finish() {
        let mut b = LaneBuilder::new("n", "g");
        b.stop(10);
        b.sample(100, "a", Tone::Good);
        b.stop(400);
        b.sample(600, "b", Tone::Off);
        let lane = b.finish(600);
        // The state sampled at the very end lasts no time and is dropped.
        assert_eq!(lane.segments, vec![seg(100, 400, "a", Tone::Good)]);
        assert!(LaneBuilder::new("empty", "g").finish(1_000).segments.is_empty());
    }

    #[test]
    fn tones_order() {
        assert_eq!(Tone::Good.worse(Tone::Bad), Tone::Bad);
        assert_eq!(Tone::Warn.worse(Tone::Neutral), Tone::Warn);
        assert_eq!(Tone::Off.worse(Tone::Good), Tone::Good);
        assert_eq!(Tone::Neutral.worse(Tone::Good), Tone::Neutral);
    }

    #[test]
    fn flipping_lane_renders_few_rects() {
        let mut b = LaneBuilder::new("flip", "g");
        for n in 0..10_000u64 {
            if n % 2 == 0 {
                b.sample(n * 100, "ready", Tone::Good);
            } else {
                b.sample(n * 100, "replicating", Tone::Warn);
            }
        }
        let lane = b.finish(1_000_000);
        assert_eq!(lane.segments.len(), 10_000);
        let scale = Scale { end_ms: 1_000_000 };
        let pieces = coalesce(&lane.segments, &scale);
        assert_eq!(pieces.len(), 1, "{pieces:?}");
        assert_eq!(pieces[0].tone, Tone::Warn);
        assert_eq!(pieces[0].label(), "ready / replicating");
        assert_eq!(pieces[0].states, 10_000);
        let mut picture = Picture::new("flip", 1_000_000);
        picture.push_lane(lane);
        let svg = render_svg(&picture);
        assert!(svg.matches("<rect").count() < 30, "{}", svg.matches("<rect").count());
        assert!(svg.contains("ready / replicating (10000 states), 0.0–1000.0 s"));
        check_xml(&svg).unwrap();
    }

    #[test]
    fn narrow_bad_state_stays_visible_between_wide_good_ones() {
        let segments = vec![
            seg(0, 400_000, "ok", Tone::Good),
            seg(400_000, 400_050, "down", Tone::Bad),
            seg(400_050, 900_000, "ok", Tone::Good),
        ];
        let scale = Scale { end_ms: 900_000 };
        let pieces = coalesce(&segments, &scale);
        assert_eq!(pieces.iter().map(|p| p.tone).collect::<Vec<_>>(), vec![Tone::Good, Tone::Bad, Tone::Good]);
        let mut picture = Picture::new("t", 900_000);
        picture.lanes.push(Lane { name: "l".into(), group: "g".into(), segments });
        let svg = render_svg(&picture);
        // Drawn at least a pixel wide, with the exact times on hover.
        let start = svg.find("<rect class=\"bad\"").unwrap();
        let rect = &svg[start..start + svg[start..].find("</rect>").unwrap()];
        assert!(rect.contains("width=\"1.0\"") && rect.contains("down, 400.000–400.050 s"), "{rect}");
    }

    #[test]
    fn many_distinct_narrow_states_stay_bounded() {
        let segments: Vec<Segment> =
            (0..20_000u64).map(|n| seg(n * 10, n * 10 + 10, &format!("term {n}"), Tone::Neutral)).collect();
        let mut picture = Picture::new("t", 200_000);
        picture.lanes.push(Lane { name: "l".into(), group: "g".into(), segments });
        let svg = render_svg(&picture);
        assert!(svg.matches("<rect").count() < 1_500);
        assert!(svg.len() < 600_000, "{}", svg.len());
        check_xml(&svg).unwrap();
    }

    #[test]
    fn marks_in_one_pixel_coalesce() {
        let mut picture = Picture::new("t", 900_000);
        for n in 0..500 {
            picture.marks.push(Mark {
                at_ms: 100_000 + n,
                lane: None,
                text: format!("stale {n}"),
                kind: MarkKind::StaleRead,
            });
        }
        let svg = render_svg(&picture);
        assert_eq!(svg.matches("class=\"ms\"").count(), 2, "one mark and the legend");
        assert!(svg.contains("stale 0 (+499 more), 100.000–100.499 s"));
    }

    #[test]
    fn escapes_text() {
        let mut picture = Picture::new("a < b & \"c\" 'd' > e\u{1}", 1_000);
        picture.lanes.push(Lane {
            name: "<pod & \"x\">".into(),
            group: "g".into(),
            segments: vec![seg(0, 1_000, "<&\">", Tone::Bad)],
        });
        picture.bands.push(Band { start_ms: 0, end_ms: 500, text: "cut <a> & \"b\"".into() });
        picture.marks.push(Mark { at_ms: 10, lane: Some(0), text: "x < y & \"z\"".into(), kind: MarkKind::Violation });
        let svg = render_svg(&picture);
        check_xml(&svg).unwrap();
        assert!(svg.contains("a &lt; b &amp; &quot;c&quot; &apos;d&apos; &gt; e\u{FFFD}"));
        assert!(svg.contains("&lt;pod &amp; &quot;x&quot;&gt;"));
        assert!(svg.contains("cut &lt;a&gt; &amp; &quot;b&quot;"));
        assert!(svg.contains("x &lt; y &amp; &quot;z&quot;"));
        assert!(!svg.contains("<pod") && !svg.contains("<a>"));
    }

    #[test]
    fn renders_well_formed_and_complete() {
        let picture = sample_picture();
        let svg = render_svg(&picture);
        check_xml(&svg).unwrap();
        assert!(svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));
        for text in [
            "g-read-1-0 role",
            "read_1 registration",
            "partition g-read-1-0",
            "clock skew g-read-1-1",
            "kill g-read-1-0",
            "two mains",
            "main, 0.0–400.0 s",
            "replica, 400.0–900.0 s",
            "ready / replicating (9000 states), 0.0–900.0 s",
            "writes unavailable, 420.0 s",
            ">60 s<",
            ">900 s<",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        // Overlapping bands are labelled in different rows.
        let label_y = |text: &str| {
            let at = svg.find(&format!(">{text}</text>")).unwrap();
            let start = svg[..at].rfind("<text class=\"bandtext\"").unwrap();
            svg[start..at].split("y=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
        };
        assert_ne!(label_y("partition g-read-1-0"), label_y("clock skew g-read-1-1"));
        // One separator between the two groups.
        assert_eq!(svg.matches("class=\"sep\"").count(), 1);
        // No scripts or external references.
        assert!(!svg.contains("<script") && !svg.contains("href") && !svg.contains("@import"));
    }

    #[test]
    fn deterministic() {
        let a = render_svg(&sample_picture());
        let b = render_svg(&sample_picture());
        assert_eq!(a, b);
        assert_eq!(a, render_svg(&sample_picture().clone()));
    }

    #[test]
    fn empty_picture_renders() {
        let svg = render_svg(&Picture::default());
        check_xml(&svg).unwrap();
        assert!(svg.contains("</svg>"));
        let svg = render_svg(&Picture::new("nothing", 0));
        check_xml(&svg).unwrap();
    }

    #[test]
    fn tick_spacing() {
        assert_eq!(tick_step_ms(900_000), 60_000);
        assert_eq!(tick_step_ms(60_000), 5_000);
        assert_eq!(tick_step_ms(1), 100);
        assert_eq!(tick_step_ms(3_600_000), 300_000);
        assert!(tick_step_ms(1_000 * 86_400_000) >= 86_400_000);
        assert_eq!(tick_label(30_000), "30 s");
        assert_eq!(tick_label(500), "0.5 s");
    }

    #[test]
    fn checker_rejects_bad_xml() {
        assert!(check_xml("<a><b></a></b>").is_err());
        assert!(check_xml("<a>x & y</a>").is_err());
        assert!(check_xml("<a x=\"<\"/>").is_err());
        assert!(check_xml("<a/><b/>").is_err());
        assert!(check_xml("<a>").is_err());
        assert!(check_xml("<a x=\"&amp;\">&lt;</a>").is_ok());
    }
}
