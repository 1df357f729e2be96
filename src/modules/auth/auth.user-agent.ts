/** A coarse reading of a User-Agent for the sessions list; not a fingerprint. */
export function describeUserAgent(ua: string | undefined): { device_type: string | null; browser: string | null; os: string | null } {
  if (!ua) return { device_type: null, browser: null, os: null };
  const device_type = /mobile|iphone|android(?!.*tablet)/i.test(ua) ? 'mobile' : /ipad|tablet/i.test(ua) ? 'tablet' : 'desktop';
  const browser =
    /edg\//i.test(ua) ? 'Edge' : /chrome\//i.test(ua) ? 'Chrome' : /firefox\//i.test(ua) ? 'Firefox' : /safari\//i.test(ua) ? 'Safari' : /curl\//i.test(ua) ? 'curl' : null;
  const os =
    /windows/i.test(ua) ? 'Windows' : /iphone|ipad|ios/i.test(ua) ? 'iOS' : /mac os/i.test(ua) ? 'macOS' : /android/i.test(ua) ? 'Android' : /linux/i.test(ua) ? 'Linux' : null;
  return { device_type, browser, os };
}
