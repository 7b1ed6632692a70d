//! Where inference runs: the devices, their memory budgets, the worker threads with their
//! per-model queues and batching, and the counters they keep.

pub mod device;
pub mod memory;
pub mod metrics;
pub mod workers;
