<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hci="http://sap.com/it/">
  <xsl:include href="common.xsl"/>
  <xsl:param name="dc_country"/>
  <xsl:param name="exchange"/>
  <xsl:param name="greeting" select="'none'"/>
  <xsl:template match="/">
    <xsl:value-of select="hci:setHeader($exchange, 'ItemCount', count(/*:Order/*:Item))"/>
    <Items country="{$dc_country}" greeting="{$greeting}">
      <xsl:for-each select="/*:Order/*:Item">
        <xsl:call-template name="item"/>
      </xsl:for-each>
    </Items>
  </xsl:template>
</xsl:stylesheet>
