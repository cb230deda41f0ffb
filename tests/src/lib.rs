//! Cross-service, fault-injection and load tests
