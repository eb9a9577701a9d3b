//! Reading a run's event stream over HTTP, for the CLI, the demo and the end-to-end
//! tests: the platform's SSE parser over a `reqwest` response. Browsers have
//! EventSource; command-line users have this.

use futures::Stream;
use switchyard_platform::sse::client::{self, StreamError};

pub use switchyard_platform::sse::client::{Event as Frame, EventTooLarge, Parser};

/// Why the stream of frames could not go on: the response broke, or one frame was too
/// large and was dropped.
pub type Error = StreamError<reqwest::Error>;

/// Turns a streaming HTTP response into a stream of frames.
pub fn frames(response: reqwest::Response) -> impl Stream<Item = Result<Frame, Error>> {
    client::events(response.bytes_stream(), Parser::default())
}
