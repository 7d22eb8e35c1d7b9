//! The real grammers client (0.11, as tgferry pins it) against the fake over loopback.
//! One test binary; each test starts its own server on ephemeral ports and finishes in
//! well under a second or two (every await is bounded, see `common::bounded`).

mod accounts;
mod basics;
mod common;
mod faults;
mod files;
mod rules;
mod source;
