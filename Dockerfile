# The sample service that ci_service builds for itself when this repository's pull requests merge
# (see dockerInfo.json). A tiny static site served by busybox httpd.
FROM busybox:1.36
RUN mkdir -p /www \
 && echo '<!doctype html><title>ci_service sample</title><h1>Built by ci_service from a merged pull request</h1><p><a href="version.json">version.json</a></p>' > /www/index.html
COPY dockerInfo.json /www/version.json
EXPOSE 8000
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
