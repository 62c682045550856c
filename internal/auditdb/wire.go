package auditdb

// PayloadEncodingBatch is the AuditStream payload_encoding value (in
// mcpgw.v1.PayloadEncoding numbering) for a payload that is one encoded
// Batch (AppendBinary): exactly the record the edge's spool holds. The
// control plane decodes it with DecodeBatch and so hashes and checksums the
// very bytes the edge hashed, gap times included, which the JSON-lines
// encodings cannot carry. node.proto does not name the value yet; edge and
// control plane agree on it here until it does.
const PayloadEncodingBatch int32 = 5
