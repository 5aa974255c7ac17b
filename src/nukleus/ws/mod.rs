//! The WebSocket nukleus.
