//! Bolt version negotiation.

use super::message::BoltVersion;

/// The magic preamble every Bolt client sends first.
pub const MAGIC: [u8; 4] = [0x60, 0x60, 0xB0, 0x17];

/// Picks the highest version that both a client proposal and `supported` contain.
///
/// Each proposal is `[0, range, minor, major]`; a non-zero range proposes `minor` down to
/// `minor - range` of the same major (Bolt 4.3+ style). `None` means no common version.
pub fn negotiate(proposals: &[[u8; 4]; 4], supported: &[BoltVersion]) -> Option<BoltVersion> {
    let mut best: Option<BoltVersion> = None;
    for p in proposals {
        let [_, range, minor, major] = *p;
        if major == 0 {
            continue;
        }
        for m in (minor.saturating_sub(range)..=minor).rev() {
            let v = BoltVersion::new(major, m);
            if supported.contains(&v) && best.is_none_or(|b| v > b) {
                best = Some(v);
            }
        }
    }
    best
}

/// Encodes the server's answer to the handshake.
pub fn answer(v: Option<BoltVersion>) -> [u8; 4] {
    match v {
        Some(v) => [0, 0, v.minor, v.major],
        None => [0; 4],
    }
}

/// Encodes a proposal of `major.minor` and the `range` minors below it.
pub fn proposal(major: u8, minor: u8, range: u8) -> [u8; 4] {
    [0, range, minor, major]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u8, minor: u8) -> BoltVersion {
        BoltVersion::new(major, minor)
    }

    const MEMGRAPH_3_11: [BoltVersion; 5] = [
        BoltVersion::new(1, 0),
        BoltVersion::new(4, 0),
        BoltVersion::new(4, 1),
        BoltVersion::new(4, 3),
        BoltVersion::new(5, 2),
    ];

    #[test]
    fn neo4rs_proposal_gets_4_3_before_3_12_and_4_4_after() {
        let neo4rs = [proposal(4, 4, 0), proposal(4, 3, 0), proposal(4, 1, 0), proposal(4, 0, 0)];
        assert_eq!(negotiate(&neo4rs, &MEMGRAPH_3_11), Some(v(4, 3)));
        let mut with_44 = MEMGRAPH_3_11.to_vec();
        with_44.push(v(4, 4));
        assert_eq!(negotiate(&neo4rs, &with_44), Some(v(4, 4)));
    }

    #[test]
    fn ranges_are_expanded() {
        let p = [proposal(5, 4, 4), proposal(4, 4, 2), [0; 4], [0; 4]];
        assert_eq!(negotiate(&p, &MEMGRAPH_3_11), Some(v(5, 2)));
        let p = [proposal(5, 8, 3), proposal(4, 2, 1), [0; 4], [0; 4]];
        assert_eq!(negotiate(&p, &MEMGRAPH_3_11), Some(v(4, 1)));
    }

    #[test]
    fn no_common_version() {
        let p = [proposal(3, 0, 0), proposal(6, 0, 0), [0; 4], [0; 4]];
        assert_eq!(negotiate(&p, &MEMGRAPH_3_11), None);
        assert_eq!(answer(None), [0; 4]);
        assert_eq!(answer(Some(v(4, 3))), [0, 0, 3, 4]);
    }
}
