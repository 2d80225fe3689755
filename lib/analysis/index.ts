export { analyzeModel, defaultBlocks, type AnalyzeOptions, type CalibratedSource, type LinearAnalysis, type MethodError, type ModelAnalysis } from './analyze.js';
export { BASELINE_METHODS, baselineQuant, METHOD_LABELS, type BaselineMethod } from './methods.js';
export { observe, RULES, summarize, THRESHOLDS, type LinearObservations, type ObservationSummary } from './observations.js';
export { linearOutputError, type OutputError } from './quant-error.js';
export { writeReport, type ReportContext, type ReportPlot, type ReportResult } from './report.js';
export { channelAbsMax, histogram, tokenStats, type Histogram, type TokenStats } from './stats.js';
export { writeCalibrationReport } from './calibration-report.js';
