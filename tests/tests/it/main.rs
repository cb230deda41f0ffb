//! Cross-service tests against real PostgreSQL + NATS (distributed) and the embedded mode.
mod access;
mod allocation;
mod assessment;
mod audit;
mod bus;
mod casework;
mod consent;
mod councils;
mod faults;
mod gateway;
mod ops;
mod plan;
mod rejections;
mod reporting;
mod slice;
mod unsafe_contacts;
mod urgent;
