// Must be evaluated before the generated code: the generated classes capture
// 64-bit field defaults (Long vs number) when their module is evaluated.
//
// 64-bit fields (sequence numbers, Unix milliseconds) decode as plain JS
// numbers. They stay far below 2^53; Long objects would cost an allocation
// per field on the ingest hot path.
import protobuf from 'protobufjs/minimal.js';

protobuf.util.Long = null as unknown as typeof protobuf.util.Long;
protobuf.configure();
