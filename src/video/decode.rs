//! `Video`: open, probe, and decode chosen frames, seeking only when it pays.

use std::path::Path;
use std::sync::Arc;

use ffmpeg::codec::{self, threading};
use ffmpeg::ffi;
use ffmpeg::format::context::Input;
use ffmpeg::util::frame;
use ffmpeg::{Packet, Rational, media};
use ffmpeg_next as ffmpeg;

use super::convert::Converter;
use super::index::{FrameIndex, KeyEntry, PacketEntry};
use super::input::{self, SharedBytes, Source};
use super::{Clip, Limits, Resize, RgbFrame, Sampling, VideoError};

/// Decoder threads: frame threading with 2 threads cut 1080p decode time by ~40%.
const DECODE_THREADS: usize = 2;
/// With [`SeekPolicy::Auto`], seek only to skip at least this many packets: a seek
/// throws away the frames in flight inside the decoder.
const MIN_SKIP: usize = 4;
/// Consecutive unreadable packets after which the demuxer is deemed stuck.
const MAX_BAD_PACKETS: usize = 1000;

/// What the video is, as probed at open.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Duration of the video stream in seconds.
    pub duration_s: f64,
    /// Average frame rate in frames per second.
    pub fps: f64,
    /// Number of frames, counted from the packets (exact, not the container's claim).
    pub frames: u64,
    /// Displayed width in pixels, after rotation.
    pub width: u32,
    /// Displayed height in pixels, after rotation.
    pub height: u32,
    /// FFmpeg's short codec name, e.g. `h264`.
    pub codec: String,
    /// Clockwise rotation (0, 90, 180, 270) applied to display the video upright.
    pub rotation: i32,
}

/// When sampling may seek instead of decoding straight through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeekPolicy {
    /// Seek when a keyframe lets decoding skip several packets (the default).
    #[default]
    Auto,
    /// Never seek: decode every frame from the start.
    Never,
    /// Seek whenever a keyframe lies ahead, however close (for tests and benchmarks).
    Always,
}

/// Counters from the last `sample` or `decode_all` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Video packets sent to the decoder.
    pub packets: u64,
    /// Frames the decoder produced.
    pub frames_decoded: u64,
    /// Seeks performed.
    pub seeks: u64,
}

/// An opened video, ready to sample frames from.
pub struct Video {
    source: Source,
    limits: Limits,
    input: Input,
    stream: usize,
    time_base: f64,
    decoder: ffmpeg::decoder::Video,
    index: FrameIndex,
    first_packet: PacketEntry,
    first_pts: i64,
    info: VideoInfo,
    policy: SeekPolicy,
    stats: DecodeStats,
    /// A packet read ahead (while verifying a seek) and not yet decoded.
    pending: Option<Packet>,
    /// Packets read since the last rewind; 0 means the input is at its start.
    read_since_rewind: u64,
}

impl std::fmt::Debug for Video {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Video")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Video {
    /// Opens a video file, probes it and checks it against `limits`.
    pub fn open(path: &Path, limits: &Limits) -> Result<Video, VideoError> {
        Self::from_source(Source::Path(path.to_path_buf()), limits)
    }

    /// Opens a video held in memory (an upload), probes it and checks it against `limits`.
    pub fn from_bytes(bytes: Vec<u8>, limits: &Limits) -> Result<Video, VideoError> {
        Self::from_source(Source::Bytes(SharedBytes(Arc::new(bytes))), limits)
    }

    /// What the video is.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Chooses when sampling may seek; the frames returned are the same either way.
    pub fn set_seek_policy(&mut self, policy: SeekPolicy) {
        self.policy = policy;
    }

    /// Counters from the last `sample` or `decode_all` call.
    pub fn last_stats(&self) -> DecodeStats {
        self.stats
    }

    /// Decodes the frames `sampling` asks for, resized as `resize` says.
    #[tracing::instrument(level = "debug", skip_all, fields(frames = self.info.frames))]
    pub fn sample(
        &mut self,
        sampling: &Sampling,
        resize: &Resize,
    ) -> Result<Vec<Clip>, VideoError> {
        let plans = sampling.plan(self.info.frames, &|i| self.frame_time(i));
        let mut targets: Vec<u64> = plans
            .iter()
            .flat_map(|p| p.frames.iter().copied())
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let frames = self.decode_targets(&targets, resize)?;
        Ok(plans
            .into_iter()
            .map(|plan| Clip {
                start_frame: plan.start,
                frames: plan
                    .frames
                    .iter()
                    .map(|f| {
                        frames[targets
                            .binary_search(f)
                            .expect("every planned frame is a target")]
                        .clone()
                    })
                    .collect(),
            })
            .collect())
    }

    /// Decodes every frame, in presentation order.
    #[tracing::instrument(level = "debug", skip_all, fields(frames = self.info.frames))]
    pub fn decode_all(&mut self, resize: &Resize) -> Result<Vec<RgbFrame>, VideoError> {
        let targets: Vec<u64> = (0..self.info.frames).collect();
        self.decode_targets(&targets, resize)
    }

    fn from_source(source: Source, limits: &Limits) -> Result<Video, VideoError> {
        input::init();
        let bytes = source.len()?;
        if bytes == 0 {
            return Err(VideoError::NotAVideo("the input is empty".into()));
        }
        limits.check_bytes(bytes)?;
        let mut input = source.open()?;
        if input.duration() > 0 {
            limits.check_duration(input.duration() as f64 / f64::from(ffi::AV_TIME_BASE))?;
        }
        let stream = input
            .streams()
            .find(|s| {
                s.parameters().medium() == media::Type::Video
                    && !s
                        .disposition()
                        .contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC)
            })
            .ok_or(VideoError::NoVideoStream)?;
        let stream_index = stream.index();
        let params = stream.parameters();
        // SAFETY: `params` wraps the stream's valid AVCodecParameters.
        let (width, height) = unsafe {
            (
                (*params.as_ptr()).width.max(0) as u32,
                (*params.as_ptr()).height.max(0) as u32,
            )
        };
        if width == 0 || height == 0 {
            return Err(VideoError::Corrupt(
                "the video stream does not say how large its frames are".into(),
            ));
        }
        limits.check_pixels(width, height)?;
        let time_base = stream.time_base();
        let rotation = input::rotation(&stream);
        let rate = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .find(|r| r.numerator() > 0 && r.denominator() > 0);
        let declared_frames = stream.frames().max(0) as u64;
        let decoder = open_decoder(params, time_base)?;
        let codec_name = decoder.id().name().to_string();

        let scan = scan(&mut input, stream_index, limits)?;
        let index = FrameIndex::new(&scan.packets);
        let first_packet = *scan
            .packets
            .first()
            .ok_or_else(|| VideoError::Corrupt("the video stream holds no frames".into()))?;
        if index.frames == 0 {
            return Err(VideoError::Corrupt(
                "the video stream holds no frames".into(),
            ));
        }
        limits.check_frames(index.frames)?;
        let declared_s = input.duration() as f64 / f64::from(ffi::AV_TIME_BASE);
        if (declared_frames > 0 && (scan.packets.len() as u64) < declared_frames)
            || (declared_s > 0.0 && scan.end_s < 0.9 * declared_s - 0.1)
        {
            return Err(VideoError::Corrupt(format!(
                "the file is cut short: it declares {declared_s:.2} s but holds only {:.2} s",
                scan.end_s.max(0.0)
            )));
        }

        let tb = f64::from(time_base);
        let first_pts = index.pts_of(0).unwrap_or(0);
        let fps_from_rate = rate.map(f64::from);
        let duration_s = match (index.timed, index.pts_of(index.frames - 1)) {
            (true, Some(last)) => {
                let step = fps_from_rate.map_or(scan.last_duration as f64 * tb, |f| 1.0 / f);
                (last as f64 - first_pts as f64) * tb + step
            }
            _ => fps_from_rate.map_or(declared_s, |f| index.frames as f64 / f),
        };
        let fps = match fps_from_rate {
            Some(f) if index.frames > 1 => f,
            _ if duration_s > 0.0 => index.frames as f64 / duration_s,
            _ => 0.0,
        };
        limits.check_duration(duration_s)?;
        let (width, height) = if rotation % 180 == 0 {
            (width, height)
        } else {
            (height, width)
        };
        let info = VideoInfo {
            duration_s,
            fps,
            frames: index.frames,
            width,
            height,
            codec: codec_name,
            rotation,
        };

        discard_other_streams(&mut input, stream_index);
        let mut video = Video {
            source,
            limits: limits.clone(),
            input,
            stream: stream_index,
            time_base: tb,
            decoder,
            index,
            first_packet,
            first_pts,
            info,
            policy: SeekPolicy::Auto,
            stats: DecodeStats::default(),
            pending: None,
            read_since_rewind: scan.packets.len() as u64,
        };
        // Also makes mkv/webm load their seek index now rather than on the first seek.
        video.rewind()?;
        tracing::debug!(info = ?video.info, timed = video.index.timed, keyframes = video.index.keys.len(), "opened video");
        Ok(video)
    }

    /// Start time of frame `rank` in seconds from the first frame.
    fn frame_time(&self, rank: u64) -> f64 {
        match self.index.pts_of(rank) {
            Some(pts) if self.index.timed => (pts as f64 - self.first_pts as f64) * self.time_base,
            _ if self.info.fps > 0.0 => rank as f64 / self.info.fps,
            _ => 0.0,
        }
    }

    /// Decodes the frames with the given presentation indices (sorted, unique).
    fn decode_targets(
        &mut self,
        targets: &[u64],
        resize: &Resize,
    ) -> Result<Vec<RgbFrame>, VideoError> {
        self.stats = DecodeStats::default();
        let mut out: Vec<Option<RgbFrame>> = vec![None; targets.len()];
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut conv = Converter::new(*resize, self.info.rotation, self.limits.max_pixels);
        self.rewind()?;
        let min_skip = match self.policy {
            SeekPolicy::Auto => MIN_SKIP,
            _ => 0,
        };
        let mut may_seek = self.index.timed && self.policy != SeekPolicy::Never;
        let mut next = 0usize;
        // Key for `targets[next]`, computed once per target.
        let mut key: Option<(usize, Option<KeyEntry>)> = None;
        let mut pos = 0usize;
        let mut accept_from = 0u64;
        let mut counter = 0u64;
        let mut frame = frame::Video::empty();
        let mut last = frame::Video::empty();
        let mut last_rank: Option<u64> = None;
        let mut decode_errors = 0u64;
        let mut decode_all_packets = true;
        set_skip_nonref(&mut self.decoder, false);
        while next < targets.len() {
            if may_seek {
                if key.is_none_or(|(n, _)| n != next) {
                    key = Some((next, self.index.key_for(targets[next])));
                }
                if let Some((_, Some(k))) = key
                    && k.pos > pos + min_skip
                {
                    match self.seek_to(k, targets[next])? {
                        Some((landed, safe_rank)) => {
                            pos = landed;
                            accept_from = safe_rank;
                        }
                        None => {
                            self.rewind()?;
                            pos = 0;
                            accept_from = 0;
                            may_seek = false;
                        }
                    }
                    last_rank = None;
                }
            }
            let packet = self.next_packet()?;
            let eof = packet.is_none();
            let sent = match &packet {
                Some(p) => {
                    pos += 1;
                    self.stats.packets += 1;
                    // Frames nothing needs and nothing references need not be decoded.
                    let wanted = !self.index.timed
                        || p.pts()
                            .and_then(|pts| self.index.rank_of(pts))
                            .is_none_or(|r| targets.binary_search(&r).is_ok());
                    if wanted != decode_all_packets {
                        decode_all_packets = wanted;
                        set_skip_nonref(&mut self.decoder, !wanted);
                    }
                    self.decoder.send_packet(p)
                }
                None => self.decoder.send_eof(),
            };
            let mut resend = false;
            match sent {
                Ok(()) => {}
                Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => resend = true,
                Err(_) => decode_errors += 1,
            }
            loop {
                match self.decoder.receive_frame(&mut frame) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Other { errno }) if errno == ffi::EAGAIN => break,
                    Err(ffmpeg::Error::Eof) => break,
                    Err(_) => {
                        decode_errors += 1;
                        continue;
                    }
                }
                self.stats.frames_decoded += 1;
                self.limits.check_frames(self.stats.frames_decoded)?;
                self.limits.check_pixels(frame.width(), frame.height())?;
                let rank = if self.index.timed {
                    match frame
                        .pts()
                        .or(frame.timestamp())
                        .and_then(|p| self.index.rank_of(p))
                    {
                        Some(r) => r,
                        None => continue,
                    }
                } else {
                    counter += 1;
                    counter - 1
                };
                if rank < accept_from {
                    continue;
                }
                // Targets this frame passed over were lost (damaged data): show the frame before.
                while next < targets.len() && targets[next] < rank {
                    out[next] = Some(match last_rank {
                        Some(lr) => conv.convert(&last, self.frame_time(lr))?,
                        None => conv.convert(&frame, self.frame_time(rank))?,
                    });
                    next += 1;
                }
                if next < targets.len() && targets[next] == rank {
                    out[next] = Some(conv.convert(&frame, self.frame_time(rank))?);
                    next += 1;
                }
                std::mem::swap(&mut frame, &mut last);
                last_rank = Some(rank);
            }
            if resend
                && let Some(p) = &packet
                && self.decoder.send_packet(p).is_err()
            {
                decode_errors += 1;
            }
            if eof {
                break;
            }
        }
        // Targets past the last decodable frame repeat it.
        if let Some(lr) = last_rank
            && next < targets.len()
        {
            let repeat = conv.convert(&last, self.frame_time(lr))?;
            for slot in &mut out[next..] {
                *slot = Some(repeat.clone());
            }
        }
        let frames: Vec<RgbFrame> = out.into_iter().flatten().collect();
        if frames.len() < targets.len() {
            return Err(VideoError::Corrupt(format!(
                "no frame could be decoded ({decode_errors} decoding errors)"
            )));
        }
        Ok(frames)
    }

    /// The next packet of the video stream, or `None` at the end.
    fn next_packet(&mut self) -> Result<Option<Packet>, VideoError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        let mut bad = 0usize;
        loop {
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) if packet.stream() == self.stream => {
                    self.read_since_rewind += 1;
                    return Ok(Some(packet));
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(ffmpeg::Error::InvalidData) if bad < MAX_BAD_PACKETS => bad += 1,
                Err(e) => {
                    return Err(VideoError::Corrupt(format!(
                        "the file could not be read: {e}"
                    )));
                }
            }
        }
    }

    /// Goes back to the first packet, verifying the landing; reopens the input if the
    /// container cannot seek there.
    fn rewind(&mut self) -> Result<(), VideoError> {
        self.decoder.flush();
        if self.read_since_rewind == 0 {
            return Ok(());
        }
        self.pending = None;
        let first = self.first_packet;
        if let Some(ts) = first.dts.or(first.pts) {
            // SAFETY: the format context is open; the stream index is valid.
            let r = unsafe {
                ffi::av_seek_frame(
                    self.input.as_mut_ptr(),
                    self.stream as i32,
                    ts,
                    ffi::AVSEEK_FLAG_BACKWARD,
                )
            };
            if r >= 0
                && let Ok(Some(p)) = self.next_packet()
                && p.pts() == first.pts
                && p.dts() == first.dts
            {
                self.pending = Some(p);
                self.read_since_rewind = 0;
                return Ok(());
            }
        }
        tracing::debug!("seeking to the start failed; reopening the input");
        self.input = self.source.open()?;
        discard_other_streams(&mut self.input, self.stream);
        self.pending = None;
        self.read_since_rewind = 0;
        Ok(())
    }

    /// Seeks to keyframe `key` for frame `target` and verifies where it landed. Returns
    /// the decode position of the keyframe read next and the first frame it makes safe,
    /// or `None` when no landing could be trusted.
    fn seek_to(&mut self, key: KeyEntry, target: u64) -> Result<Option<(usize, u64)>, VideoError> {
        // Some demuxers (MPEG-TS) land just past the requested keyframe: aim one or two
        // keyframes earlier before giving up.
        let mut aim = Some(key);
        for _ in 0..3 {
            let Some(k) = aim else { break };
            if let Some(landed) = self.seek_once(k, target)? {
                return Ok(Some(landed));
            }
            aim = self.index.key_before(k.pos);
        }
        Ok(None)
    }

    fn seek_once(
        &mut self,
        key: KeyEntry,
        target: u64,
    ) -> Result<Option<(usize, u64)>, VideoError> {
        self.stats.seeks += 1;
        self.pending = None;
        self.read_since_rewind += 1;
        // SAFETY: the format context is open; the stream index is valid.
        let r = unsafe {
            ffi::av_seek_frame(
                self.input.as_mut_ptr(),
                self.stream as i32,
                key.seek_ts,
                ffi::AVSEEK_FLAG_BACKWARD,
            )
        };
        self.decoder.flush();
        if r < 0 {
            return Ok(None);
        }
        // Landings are untrusted: skip to the first keyframe packet and look it up.
        while let Some(packet) = self.next_packet()? {
            if !packet.is_key() {
                continue;
            }
            // A packet cut by the seek (MPEG-TS) carries no known timestamp: read on.
            let Some(k) = packet
                .pts()
                .and_then(|p| self.index.pos_of(p))
                .and_then(|pos| self.index.key_at(pos))
            else {
                continue;
            };
            if k.safe_rank > target {
                tracing::debug!(target, landed = k.safe_rank, "seek overshot");
                return Ok(None);
            }
            tracing::debug!(wanted = key.pos, landed = k.pos, "seek landed");
            self.pending = Some(packet);
            return Ok(Some((k.pos, k.safe_rank)));
        }
        Ok(None)
    }
}

/// Opens the decoder for a stream, preferring libdav1d for AV1 (FFmpeg 5.1's native
/// AV1 decoder needs hardware).
fn open_decoder(
    params: codec::Parameters,
    time_base: Rational,
) -> Result<ffmpeg::decoder::Video, VideoError> {
    let id = params.id();
    if id == codec::Id::None {
        return Err(VideoError::UnsupportedCodec(
            "the video codec is unknown to FFmpeg".into(),
        ));
    }
    let codec = match id {
        codec::Id::AV1 => {
            ffmpeg::decoder::find_by_name("libdav1d").or_else(|| ffmpeg::decoder::find(id))
        }
        _ => ffmpeg::decoder::find(id),
    }
    .ok_or_else(|| {
        VideoError::UnsupportedCodec(format!("no decoder for {} is available", id.name()))
    })?;
    let mut ctx = codec::Context::from_parameters(params).map_err(|e| {
        VideoError::Corrupt(format!("the stream's codec parameters are invalid: {e}"))
    })?;
    // SAFETY: the context was just allocated; the decoder reads pkt_timebase at open.
    unsafe { (*ctx.as_mut_ptr()).pkt_timebase = time_base.into() };
    ctx.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: DECODE_THREADS,
        ..Default::default()
    });
    ctx.decoder()
        .open_as(codec)
        .and_then(|d| d.video())
        .map_err(|e| {
            VideoError::UnsupportedCodec(format!(
                "the {} decoder could not be opened: {e}",
                id.name()
            ))
        })
}

/// Makes the decoder skip (or stop skipping) frames no other frame references.
fn set_skip_nonref(decoder: &mut ffmpeg::decoder::Video, skip: bool) {
    let discard = if skip {
        ffi::AVDiscard::AVDISCARD_NONREF
    } else {
        ffi::AVDiscard::AVDISCARD_DEFAULT
    };
    // SAFETY: the codec context is open; frame threads pick the field up per packet.
    unsafe { (*decoder.as_mut_ptr()).skip_frame = discard };
}

/// What one pass over all packets found.
struct Scan {
    /// The video stream's packets, in decode order.
    packets: Vec<PacketEntry>,
    /// Latest end time over all streams, in seconds from the container's start.
    end_s: f64,
    /// Duration of the video stream's last packet, in its time base.
    last_duration: i64,
}

/// Demuxes every packet once (no decoding) to build the frame index and find truncation.
fn scan(input: &mut Input, video: usize, limits: &Limits) -> Result<Scan, VideoError> {
    // SAFETY: the format context is open.
    let start = unsafe { (*input.as_ptr()).start_time };
    let start_s = if start == ffi::AV_NOPTS_VALUE {
        0.0
    } else {
        start as f64 / f64::from(ffi::AV_TIME_BASE)
    };
    let time_bases: Vec<f64> = input.streams().map(|s| f64::from(s.time_base())).collect();
    let mut packets = Vec::new();
    let mut end_s = f64::NEG_INFINITY;
    let mut last_duration = 0;
    let mut bad = 0usize;
    loop {
        let mut packet = Packet::empty();
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if bad < MAX_BAD_PACKETS => {
                bad += 1;
                continue;
            }
            Err(e) => {
                return Err(VideoError::Corrupt(format!(
                    "the file could not be read to its end: {e}"
                )));
            }
        }
        let tb = time_bases.get(packet.stream()).copied().unwrap_or(0.0);
        if let Some(ts) = packet.pts().or(packet.dts()) {
            end_s = end_s.max((ts as f64 + packet.duration().max(0) as f64) * tb - start_s);
        }
        if packet.stream() == video {
            packets.push(PacketEntry {
                pts: packet.pts(),
                dts: packet.dts(),
                key: packet.is_key(),
                discard: packet.flags().bits() & ffi::AV_PKT_FLAG_DISCARD != 0,
            });
            last_duration = packet.duration();
            limits.check_frames(packets.len() as u64)?;
        }
    }
    Ok(Scan {
        packets,
        end_s,
        last_duration,
    })
}

/// Makes the demuxer skip streams other than the video (less work per packet).
fn discard_other_streams(input: &mut Input, video: usize) {
    // SAFETY: `streams` holds `nb_streams` valid stream pointers.
    unsafe {
        let ctx = input.as_mut_ptr();
        for i in 0..(*ctx).nb_streams as usize {
            if i != video {
                (**(*ctx).streams.add(i)).discard = ffi::AVDiscard::AVDISCARD_ALL;
            }
        }
    }
}
