//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod memory;
pub mod server;
pub mod videos;
