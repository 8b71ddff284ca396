"""Shared helpers of the ops tests: processes and ports (`procs`), the detector service
(`service`), a throwaway PKI (`pki`) and nginx rendered from the repo's templates (`nginx`).

Every helper drives the real program and fails with a message naming a missing tool or binary.
"""
