//! Tests of token extraction and validation.
