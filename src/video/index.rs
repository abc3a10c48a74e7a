//! Our own frame index, built by demuxing every packet once (no decoding).
//!
//! Container indexes are untrusted (lazy in mkv, absent in ts, decode-time in mp4), so
//! frame numbers, keyframes and seek targets all come from the packets themselves.

use std::collections::HashMap;

/// What the scan learnt about one video packet, in decode order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketEntry {
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub key: bool,
    /// The demuxer marked it as not to be shown (mp4 edit lists).
    pub discard: bool,
}

/// A keyframe from which decoding can start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyEntry {
    /// Decode-order position of the keyframe packet.
    pub pos: usize,
    /// First presentation index guaranteed complete when decoding starts here: every
    /// frame at or after it follows the keyframe in decode order.
    pub safe_rank: u64,
    /// Timestamp to seek to, in stream time base.
    pub seek_ts: i64,
}

/// Frames of one video stream in presentation order, with their timestamps and keyframes.
#[derive(Debug)]
pub(crate) struct FrameIndex {
    /// Number of frames the decoder will show.
    pub frames: u64,
    /// Every shown frame has a distinct timestamp: frames are numbered by timestamp and
    /// seeking is possible. Otherwise frames are numbered by decode output order.
    pub timed: bool,
    /// Presentation timestamps, sorted (timed only).
    pts_sorted: Vec<i64>,
    /// Decode position of each packet, by presentation timestamp (timed only).
    pos_of_pts: HashMap<i64, usize>,
    pub keys: Vec<KeyEntry>,
}

impl FrameIndex {
    /// Builds the index from the packets of one stream, in decode order.
    pub fn new(packets: &[PacketEntry]) -> FrameIndex {
        let shown: Vec<&PacketEntry> = packets.iter().filter(|p| !p.discard).collect();
        let frames = shown.len() as u64;
        let mut pts_sorted: Vec<i64> = shown.iter().filter_map(|p| p.pts).collect();
        pts_sorted.sort_unstable();
        pts_sorted.dedup();
        let timed = !shown.is_empty() && pts_sorted.len() == shown.len();
        if !timed {
            return FrameIndex {
                frames,
                timed,
                pts_sorted: Vec::new(),
                pos_of_pts: HashMap::new(),
                keys: Vec::new(),
            };
        }
        let mut pos_of_pts = HashMap::with_capacity(packets.len());
        let mut keys = Vec::new();
        // Highest presentation index among packets decoded so far.
        let mut seen_max: Option<u64> = None;
        for (pos, p) in packets.iter().enumerate() {
            let rank = match (p.discard, p.pts) {
                (false, Some(pts)) => pts_sorted.binary_search(&pts).ok().map(|r| r as u64),
                _ => None,
            };
            if let Some(pts) = p.pts {
                pos_of_pts.entry(pts).or_insert(pos);
            }
            if p.key
                && let (Some(rank), Some(seek_ts)) = (rank, p.pts.or(p.dts))
            {
                let after_seen = seen_max.map_or(0, |m| m + 1);
                keys.push(KeyEntry {
                    pos,
                    safe_rank: after_seen.max(rank),
                    seek_ts,
                });
            }
            if let Some(rank) = rank {
                seen_max = Some(seen_max.map_or(rank, |m| m.max(rank)));
            }
        }
        FrameIndex {
            frames,
            timed,
            pts_sorted,
            pos_of_pts,
            keys,
        }
    }

    /// Presentation index of a decoded frame with timestamp `pts` (timed only).
    pub fn rank_of(&self, pts: i64) -> Option<u64> {
        self.pts_sorted.binary_search(&pts).ok().map(|r| r as u64)
    }

    /// Decode position of the packet with timestamp `pts` (timed only).
    pub fn pos_of(&self, pts: i64) -> Option<usize> {
        self.pos_of_pts.get(&pts).copied()
    }

    /// Timestamp of frame `rank` in stream time base (timed only).
    pub fn pts_of(&self, rank: u64) -> Option<i64> {
        self.pts_sorted.get(rank as usize).copied()
    }

    /// The latest keyframe from which frame `rank` can be decoded.
    pub fn key_for(&self, rank: u64) -> Option<KeyEntry> {
        self.keys
            .iter()
            .filter(|k| k.safe_rank <= rank)
            .max_by_key(|k| k.pos)
            .copied()
    }

    /// The last keyframe before decode position `pos`.
    pub fn key_before(&self, pos: usize) -> Option<KeyEntry> {
        self.keys.iter().rev().find(|k| k.pos < pos).copied()
    }

    /// The keyframe at decode position `pos`, if that packet is one.
    pub fn key_at(&self, pos: usize) -> Option<KeyEntry> {
        self.keys.iter().find(|k| k.pos == pos).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pts: i64, key: bool) -> PacketEntry {
        PacketEntry {
            pts: Some(pts),
            dts: None,
            key,
            discard: false,
        }
    }

    #[test]
    fn b_frames_are_ranked_by_timestamp() {
        // Decode order I0 P3 B1 B2 I4 P6 B5 (closed GOPs).
        let pkts: Vec<_> = [
            (0, true),
            (3, false),
            (1, false),
            (2, false),
            (4, true),
            (6, false),
            (5, false),
        ]
        .iter()
        .map(|&(p, k)| packet(p * 10, k))
        .collect();
        let index = FrameIndex::new(&pkts);
        assert!(index.timed);
        assert_eq!(index.frames, 7);
        assert_eq!(index.rank_of(30), Some(3));
        assert_eq!(index.key_for(5).map(|k| k.pos), Some(4));
        assert_eq!(index.key_for(3).map(|k| k.pos), Some(0));
    }

    #[test]
    fn open_gop_leading_frames_belong_to_the_previous_keyframe() {
        // I0 P4 B2 | CRA8 B6 B7 (leading, need the previous GOP) P10 B9
        let pkts: Vec<_> = [
            (0, true),
            (4, false),
            (2, false),
            (8, true),
            (6, false),
            (7, false),
            (10, false),
            (9, false),
        ]
        .iter()
        .map(|&(p, k)| packet(p, k))
        .collect();
        let index = FrameIndex::new(&pkts);
        let cra = index.key_at(3).unwrap();
        assert_eq!(cra.safe_rank, index.rank_of(8).unwrap());
        assert_eq!(index.key_for(index.rank_of(7).unwrap()).unwrap().pos, 0);
    }

    #[test]
    fn missing_timestamps_make_the_index_untimed() {
        let pkts = vec![
            packet(0, true),
            PacketEntry {
                pts: None,
                dts: Some(1),
                key: false,
                discard: false,
            },
        ];
        let index = FrameIndex::new(&pkts);
        assert!(!index.timed);
        assert_eq!(index.frames, 2);
        assert!(index.key_for(1).is_none());
    }
}
