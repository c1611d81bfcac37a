//! Reproducible image building, with no network and no daemon: deterministic layers
//! from directories ([`layer`], honouring `.berthignore` and warning about files that
//! look like secrets), the image config and manifest on top of a base ([`image`]),
//! SLSA provenance for the build ([`provenance`]), and explaining why two images
//! differ ([`diff`]).

pub mod diff;
pub mod image;
pub mod layer;
pub mod provenance;
