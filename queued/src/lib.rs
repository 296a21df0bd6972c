//! queued
