<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:template match="/">
    <Copy count="{count(//*)}"><xsl:copy-of select="*"/></Copy>
  </xsl:template>
</xsl:stylesheet>
