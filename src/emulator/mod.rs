//! A local emulator of the Kling video API (see `../shared/kling-api.md`).
