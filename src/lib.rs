//! webrocket: a WebRocket-compatible clustered real-time message broker.
#![deny(unsafe_code)]
