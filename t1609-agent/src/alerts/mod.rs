//! Alerts beyond the process rules' own hits: on connects ([`network`]), on what ran in
//! an injected session ([`session`]), the "repeated N times" follow-up of a dedup window
//! ([`followup`]), containers named after their alert ([`metadata`]) and captured events
//! lost ([`loss`]); the links that give a process's
//! alerts one group ([`links`]); and the step that hands any alert to the sinks
//! ([`emit`]).

pub mod emit;
pub mod followup;
pub mod links;
pub mod loss;
pub mod metadata;
pub mod network;
pub mod session;
