//! What weft's commands do, independent of how they are invoked (CLI now,
//! CNI later): each operation goes model -> store -> datapath/firewall and
//! undoes its own steps when a later one fails.

pub mod context;
pub mod endpoint;
pub mod failpoint;
pub mod gc;
pub mod network;
pub mod owner;
pub mod publish;
pub mod reaper;
pub mod resolv;

pub use context::Context;
