//! Typed decoding errors, each one sentence a user understands.

/// Why a video could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The input is not a media file FFmpeg recognises (empty, text, random bytes).
    #[error("the input is not a video: {0}")]
    NotAVideo(String),
    /// The file is a media file but has no video stream (audio only, say).
    #[error("the file has no video stream")]
    NoVideoStream,
    /// The file is damaged or cut short.
    #[error("the video is corrupt or truncated: {0}")]
    Corrupt(String),
    /// The video exceeds a configured limit (bytes, pixels, duration, frames).
    #[error("the video is over a limit: {0}")]
    OverLimit(String),
    /// The codec is known but no decoder is available for it.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// Reading the input failed for reasons outside the video itself.
    #[error("i/o error while reading the video: {0}")]
    Io(#[from] std::io::Error),
}

impl VideoError {
    /// A stable machine-readable name for the error, used in API responses.
    pub fn kind(&self) -> &'static str {
        match self {
            VideoError::NotAVideo(_) => "not_a_video",
            VideoError::NoVideoStream => "no_video_stream",
            VideoError::Corrupt(_) => "corrupt_video",
            VideoError::OverLimit(_) => "over_limit",
            VideoError::UnsupportedCodec(_) => "unsupported_codec",
            VideoError::Io(_) => "io",
        }
    }

    /// Whether the client caused the error (bad upload) rather than the server.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, VideoError::Io(_))
    }
}
