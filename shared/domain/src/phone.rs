//! Phone numbers in E.164 (written by the participants work).
