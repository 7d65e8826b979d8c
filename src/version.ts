/** The ztedge version, shown by `ztedge version` and the API's /version. */
export const VERSION = '0.1.0';
