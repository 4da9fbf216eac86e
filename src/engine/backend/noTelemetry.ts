// onnxruntime-node (1.2x on Linux and macOS) starts Microsoft's telemetry when it initialises: it
// writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} and
// $TMPDIR/mat-debug-<pid>.log, and tries to send events over HTTPS when it finds a CA bundle. A
// tool that keeps a user's documents on their machine must write nothing outside its folders and
// send nothing: ORT_DISABLE_TELEMETRY switches it off. Imported by ort.ts before onnxruntime-node;
// a user who sets the variable keeps their value.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
