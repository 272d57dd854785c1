<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template name="item">
    <Item><xsl:value-of select="upper-case(*:Category)"/></Item>
  </xsl:template>
</xsl:stylesheet>
