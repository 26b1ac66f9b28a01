/** One metric's UTC hour: the unit the aggregator marks, takes and recounts. */
export interface HourBucket {
  readonly metricId: string;
  /** Start of the UTC hour. */
  readonly bucket: Date;
}
