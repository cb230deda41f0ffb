//! Generated gRPC services and event payloads for every Early Help service
//! (package `earlyhelp.<service>.v1`), and the descriptor set served by gRPC reflection.

pub mod catalogue;

/// Encoded `FileDescriptorSet` of every proto in `proto/`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/earlyhelp_descriptor.bin"));

/// `earlyhelp.intake.v1`
pub mod intake {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.intake.v1");
    }
}

/// `earlyhelp.notifications.v1`
pub mod notifications {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.notifications.v1");
    }
}

/// `earlyhelp.consent.v1`
pub mod consent {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.consent.v1");
    }
}

/// `earlyhelp.casework.v1`
pub mod casework {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.casework.v1");
    }
}

/// `earlyhelp.allocation.v1`
pub mod allocation {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.allocation.v1");
    }
}

pub mod assessment {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.assessment.v1");
    }
}

/// `earlyhelp.reporting.v1`
pub mod reporting {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.reporting.v1");
    }
}

/// `earlyhelp.records.v1`
pub mod records {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.records.v1");
    }
}

/// `earlyhelp.gateway.v1`
pub mod gateway {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("earlyhelp.gateway.v1");
    }
}
